-- Alarm handling by people (issue 4): acknowledgement, handling note, penalty decision. The rules
-- engine owns the episode columns of `alarms` (0003); these columns are written only by the web
-- app, each change also recorded in audit_log. Reports read them for the 处理率 (handling rate).
ALTER TABLE alarms ADD COLUMN IF NOT EXISTS acknowledged_at timestamptz;
ALTER TABLE alarms ADD COLUMN IF NOT EXISTS acknowledged_by bigint REFERENCES users(id);
ALTER TABLE alarms ADD COLUMN IF NOT EXISTS handled_at timestamptz;
ALTER TABLE alarms ADD COLUMN IF NOT EXISTS handled_by bigint REFERENCES users(id);
ALTER TABLE alarms ADD COLUMN IF NOT EXISTS handling_note text;

CREATE TABLE IF NOT EXISTS alarm_penalties (
    id            bigserial PRIMARY KEY,
    alarm_id      bigint NOT NULL REFERENCES alarms(id),
    decision      text NOT NULL,             -- e.g. 罚款 / 警告 / 不予处罚, free text
    fine_yuan     numeric(12, 2) CHECK (fine_yuan IS NULL OR fine_yuan >= 0),
    note          text,
    recorded_by   bigint NOT NULL REFERENCES users(id),
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alarm_penalties_alarm_idx ON alarm_penalties (alarm_id);
