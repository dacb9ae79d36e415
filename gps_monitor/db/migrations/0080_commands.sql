-- Downlink commands (issue 9 section 4): what the platform asked a terminal to do and what the
-- terminal answered. Web creates rows (state queued); the command dispatcher in
-- `gps-monitor ingest` publishes them on cmd/v1/{terminal_id}/{name} (-> sent) and records the
-- answers from gps/v1/{terminal_id}/cmd_result (-> acknowledged / failed) or expires them.
-- Kept with the alarm handling they belong to (violation records: 3 years, DOMAIN.md).
CREATE TABLE IF NOT EXISTS commands (
    id            bigserial PRIMARY KEY,
    command_id    uuid NOT NULL UNIQUE,
    terminal_id   text NOT NULL,
    vehicle_id    bigint NOT NULL REFERENCES vehicles(id),
    company_id    bigint NOT NULL REFERENCES companies(id),
    name          text NOT NULL,
    body          jsonb NOT NULL,
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'sent', 'acknowledged', 'failed', 'expired')),
    result        smallint CHECK (result IS NULL OR result BETWEEN 0 AND 3),
    result_detail text,
    alarm_id      bigint REFERENCES alarms(id),
    created_by    bigint REFERENCES users(id),      -- NULL: automatic reminder
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    sent_at       timestamptz,
    answered_at   timestamptz,                      -- the terminal's answer (gateway clock)
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS commands_pending_idx ON commands (terminal_id, created_at)
    WHERE state IN ('queued', 'sent');
CREATE INDEX IF NOT EXISTS commands_alarm_idx ON commands (alarm_id) WHERE alarm_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS commands_vehicle_idx ON commands (vehicle_id, created_at);

-- 处理方式 of an alarm's handling, and the reminder sent to the driver with it.
ALTER TABLE alarms ADD COLUMN IF NOT EXISTS handling_method text;
ALTER TABLE alarms ADD COLUMN IF NOT EXISTS remind_command_id bigint REFERENCES commands(id);
