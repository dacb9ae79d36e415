-- TimescaleDB: positions and raw messages become hypertables on their time column; compression
-- segmented by vehicle; a continuous aggregate keeps the daily summary per vehicle (local days,
-- Asia/Shanghai). Retention and the compression age are policies applied from the settings after
-- migrations (gps_monitor.db.migrate.apply_policies), so they can change without a migration.
SELECT create_hypertable('positions', by_range('fix_time', INTERVAL '1 day'), if_not_exists => true, migrate_data => true);
SELECT create_hypertable('raw_messages', by_range('received_at', INTERVAL '1 day'), if_not_exists => true, migrate_data => true);

ALTER TABLE positions SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'vehicle_id',
    timescaledb.compress_orderby = 'fix_time'
);

CREATE MATERIALIZED VIEW IF NOT EXISTS vehicle_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT vehicle_id,
       time_bucket(INTERVAL '1 day', fix_time, 'Asia/Shanghai')    AS day,
       count(*)                                                     AS positions,
       count(*) FILTER (WHERE quality = 'ok')                       AS ok_positions,
       coalesce(sum(distance_m) FILTER (WHERE quality = 'ok'), 0)   AS distance_m,
       coalesce(sum(interval_s) FILTER (WHERE quality = 'ok' AND speed_kmh >= 5), 0) AS driving_s,
       max(speed_kmh) FILTER (WHERE quality = 'ok')                 AS max_speed_kmh
FROM positions
GROUP BY vehicle_id, time_bucket(INTERVAL '1 day', fix_time, 'Asia/Shanghai')
WITH NO DATA;
