-- Alarms: one row per episode (overspeed, fatigue_driving, route_deviation, ...). The rules engine
-- owns the writes; web and reports read and add handling. dedup_key makes reprocessing the same
-- positions idempotent: (vehicle, type, started_at, and a rule-specific discriminator such as the
-- geofence id).
CREATE TABLE IF NOT EXISTS alarms (
    id                bigserial PRIMARY KEY,
    vehicle_id        bigint NOT NULL REFERENCES vehicles(id),
    company_id        bigint NOT NULL REFERENCES companies(id),
    alarm_type        text NOT NULL,
    dedup_key         text NOT NULL UNIQUE,
    started_at        timestamptz NOT NULL,
    ended_at          timestamptz,
    status            text NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'acknowledged', 'handled', 'closed')),
    late              boolean NOT NULL DEFAULT false,
    details           jsonb NOT NULL DEFAULT '{}'::jsonb,
    first_fix_time    timestamptz,
    last_fix_time     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alarms_vehicle_started_idx ON alarms (vehicle_id, started_at);
CREATE INDEX IF NOT EXISTS alarms_company_started_idx ON alarms (company_id, started_at);
CREATE INDEX IF NOT EXISTS alarms_type_started_idx ON alarms (alarm_type, started_at);
