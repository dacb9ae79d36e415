-- Storage at province scale, plain PostgreSQL mode (issue 13 section 3).
--
-- vehicle_day_kpi: the per-vehicle local-day figures the KPI report needs (web/reports/kpi.py),
-- same columns as the TimescaleDB continuous aggregate. Maintained by statement-level triggers
-- on positions in the writing transaction, from the transition tables: every INSERT (ingest's
-- batches, late and blind-area data included, COPY too), UPDATE (a drift suspect cleared to ok)
-- and DELETE (retention) adds its rows' figures per (vehicle, day) and subtracts the old ones,
-- so the table equals the aggregate of positions at every commit (no refresh lag, no job).
-- Chosen over a periodic re-aggregation of touched vehicle-days: measured, the trigger costs
-- ingest little (README "Database"), and it needs no bookkeeping of what was touched.
-- The gap test of 轨迹完整率 is baked in with the default thresholds (reports.kpi_gap_s 300 s,
-- reports.kpi_gap_m 1,000 m) and days are Asia/Shanghai days; the report falls back to raw
-- positions when its settings differ (kpi.DAILY_* constants).
CREATE TABLE IF NOT EXISTS vehicle_day_kpi (
    vehicle_id       bigint NOT NULL,
    day              timestamptz NOT NULL,   -- local midnight (Asia/Shanghai) starting the day
    positions        bigint NOT NULL,
    ok_positions     bigint NOT NULL,
    drift_positions  bigint NOT NULL,
    distance_m       double precision NOT NULL,  -- sum of distance_m of ok fixes
    gap_distance_m   double precision NOT NULL,  -- of those, stretches > 300 s AND > 1,000 m
    PRIMARY KEY (vehicle_id, day)
) WITH (fillfactor = 70);  -- room for HOT updates: every batch updates the vehicle-days it touched

CREATE OR REPLACE FUNCTION vehicle_day_kpi_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- rows sorted by key: concurrent writers lock the same vehicle-days in the same order
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        INSERT INTO vehicle_day_kpi AS k
        SELECT vehicle_id,
               date_trunc('day', fix_time AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai',
               -count(*), -count(*) FILTER (WHERE quality = 'ok'),
               -count(*) FILTER (WHERE quality = 'drift'),
               -coalesce(sum(distance_m) FILTER (WHERE quality = 'ok'), 0),
               -coalesce(sum(distance_m) FILTER (WHERE quality = 'ok' AND interval_s > 300
                                                 AND distance_m > 1000), 0)
        FROM old_rows GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (vehicle_id, day) DO UPDATE SET
            positions = k.positions + EXCLUDED.positions,
            ok_positions = k.ok_positions + EXCLUDED.ok_positions,
            drift_positions = k.drift_positions + EXCLUDED.drift_positions,
            distance_m = k.distance_m + EXCLUDED.distance_m,
            gap_distance_m = k.gap_distance_m + EXCLUDED.gap_distance_m;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO vehicle_day_kpi AS k
        SELECT vehicle_id,
               date_trunc('day', fix_time AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai',
               count(*), count(*) FILTER (WHERE quality = 'ok'),
               count(*) FILTER (WHERE quality = 'drift'),
               coalesce(sum(distance_m) FILTER (WHERE quality = 'ok'), 0),
               coalesce(sum(distance_m) FILTER (WHERE quality = 'ok' AND interval_s > 300
                                                AND distance_m > 1000), 0)
        FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (vehicle_id, day) DO UPDATE SET
            positions = k.positions + EXCLUDED.positions,
            ok_positions = k.ok_positions + EXCLUDED.ok_positions,
            drift_positions = k.drift_positions + EXCLUDED.drift_positions,
            distance_m = k.distance_m + EXCLUDED.distance_m,
            gap_distance_m = k.gap_distance_m + EXCLUDED.gap_distance_m;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        DELETE FROM vehicle_day_kpi k
        USING (SELECT DISTINCT vehicle_id,
                      date_trunc('day', fix_time AT TIME ZONE 'Asia/Shanghai')
                          AT TIME ZONE 'Asia/Shanghai' AS day
               FROM old_rows) o
        WHERE k.vehicle_id = o.vehicle_id AND k.day = o.day AND k.positions = 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION vehicle_day_kpi_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE vehicle_day_kpi;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS vehicle_day_kpi_insert ON positions;
CREATE TRIGGER vehicle_day_kpi_insert AFTER INSERT ON positions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vehicle_day_kpi_apply();
DROP TRIGGER IF EXISTS vehicle_day_kpi_update ON positions;
CREATE TRIGGER vehicle_day_kpi_update AFTER UPDATE ON positions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vehicle_day_kpi_apply();
DROP TRIGGER IF EXISTS vehicle_day_kpi_delete ON positions;
CREATE TRIGGER vehicle_day_kpi_delete AFTER DELETE ON positions
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vehicle_day_kpi_apply();
DROP TRIGGER IF EXISTS vehicle_day_kpi_truncate ON positions;
CREATE TRIGGER vehicle_day_kpi_truncate AFTER TRUNCATE ON positions
    FOR EACH STATEMENT EXECUTE FUNCTION vehicle_day_kpi_truncate();

-- the figures of the positions stored before this migration
INSERT INTO vehicle_day_kpi
SELECT vehicle_id,
       date_trunc('day', fix_time AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai',
       count(*), count(*) FILTER (WHERE quality = 'ok'), count(*) FILTER (WHERE quality = 'drift'),
       coalesce(sum(distance_m) FILTER (WHERE quality = 'ok'), 0),
       coalesce(sum(distance_m) FILTER (WHERE quality = 'ok' AND interval_s > 300
                                        AND distance_m > 1000), 0)
FROM positions GROUP BY 1, 2
ON CONFLICT (vehicle_id, day) DO NOTHING;
