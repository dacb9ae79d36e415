-- Storage at province scale, TimescaleDB mode (issue 13 section 3).
--
-- 1. raw_messages is compressed like positions (the compression age and retention are policies
--    applied from the settings, gps_monitor.db.migrate.apply_policies). How it is read decides
--    the layout: by id (positions.raw_message_id -> evidence digests, legal holds) and by
--    message_key within the redelivery window (gps_monitor.db.positions), never by topic or
--    terminal. So no segmentby column: batches of ~1,000 consecutive messages ordered by
--    (received_at, id), whose min/max metadata on both columns (ids come from a sequence in
--    arrival order) lets an id or time lookup skip the batches that cannot hold it. The
--    primary key (id, received_at) has both its columns in the orderby, as TimescaleDB requires
--    of a unique index on a compressed hypertable; the message_key index (0023) is not unique
--    (a unique one would have to contain received_at, which differs between deliveries), so the
--    one-row-per-message rule keeps working on compressed chunks through the writer's lookup.
ALTER TABLE raw_messages SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = '',
    timescaledb.compress_orderby = 'received_at, id'
);

-- 2. vehicle_day_kpi: the per-vehicle local-day figures the KPI report needs (web/reports/kpi.py),
--    so a month's report reads vehicle-days instead of raw positions. Same columns as the plain
--    mode's maintained table. The gap test of 轨迹完整率 is baked in with the default thresholds
--    (reports.kpi_gap_s 300 s, reports.kpi_gap_m 1,000 m) and days are Asia/Shanghai days; the
--    report falls back to raw positions when its settings differ (kpi.DAILY_* constants).
--    Real-time aggregation: rows newer than the materialised watermark are aggregated at query
--    time; late data below it is picked up by the refresh policy (invalidation log), which
--    re-materialises the invalidated days of the last 35 days every 30 minutes.
CREATE MATERIALIZED VIEW IF NOT EXISTS vehicle_day_kpi
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT vehicle_id,
       time_bucket(INTERVAL '1 day', fix_time, 'Asia/Shanghai')    AS day,
       count(*)                                                     AS positions,
       count(*) FILTER (WHERE quality = 'ok')                       AS ok_positions,
       count(*) FILTER (WHERE quality = 'drift')                    AS drift_positions,
       coalesce(sum(distance_m) FILTER (WHERE quality = 'ok'), 0)   AS distance_m,
       coalesce(sum(distance_m) FILTER (WHERE quality = 'ok' AND interval_s > 300
                                        AND distance_m > 1000), 0)  AS gap_distance_m
FROM positions
GROUP BY vehicle_id, time_bucket(INTERVAL '1 day', fix_time, 'Asia/Shanghai')
WITH NO DATA;
