-- Plain PostgreSQL: time-ordered positions get a BRIN index on fix_time (the primary key is the
-- btree on (vehicle_id, fix_time)); the daily summary is an ordinary view with the same columns
-- as the TimescaleDB continuous aggregate, so queries are the same in both modes.
CREATE INDEX IF NOT EXISTS positions_fix_time_brin ON positions USING brin (fix_time);
CREATE INDEX IF NOT EXISTS raw_messages_received_brin ON raw_messages USING brin (received_at);

CREATE OR REPLACE VIEW vehicle_daily AS
SELECT vehicle_id,
       date_trunc('day', fix_time AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai' AS day,
       count(*)                                                     AS positions,
       count(*) FILTER (WHERE quality = 'ok')                       AS ok_positions,
       coalesce(sum(distance_m) FILTER (WHERE quality = 'ok'), 0)   AS distance_m,
       coalesce(sum(interval_s) FILTER (WHERE quality = 'ok' AND speed_kmh >= 5), 0) AS driving_s,
       max(speed_kmh) FILTER (WHERE quality = 'ok')                 AS max_speed_kmh
FROM positions
GROUP BY 1, 2;
