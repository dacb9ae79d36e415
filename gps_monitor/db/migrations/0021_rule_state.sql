-- Per-vehicle rules engine state (rules.engine.VehicleState as JSON), written in the same
-- transaction as the alarms it produced and before the MQTT messages are acknowledged, so a
-- restarted worker resumes exactly where the last commit left it.
CREATE TABLE IF NOT EXISTS rule_state (
    vehicle_id     bigint PRIMARY KEY REFERENCES vehicles(id) ON DELETE CASCADE,
    state          jsonb NOT NULL,
    last_fix_time  timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
