-- T/JSATL 12-2017 alarm numbers (报警编号, issue 12 item 8): the random number the JT/T 808
-- gateway sends in 0x9208 for an active-safety alarm, stored BEFORE 0x9208 goes out. The
-- attachment server accepts a 0x1210 only for a number stored here, unexpired and issued to the
-- terminal naming it (so uploads survive a gateway restart, and a number computed from the
-- terminal's phone, alarm time and sequence opens nothing). ``alarm_key`` is the public key the
-- rules engine also derives (alarms.details.alarm_key): files are linked to the alarm through it.
-- Written by the gateway; read by the attachment server; rows past expires_at are deleted by it.
CREATE TABLE IF NOT EXISTS jsatl_alarm_numbers (
    alarm_number   text PRIMARY KEY CHECK (alarm_number ~ '^[0-9A-F]{32}$'),
    terminal_id    text NOT NULL,
    alarm_key      text NOT NULL,
    identification bytea NOT NULL CHECK (octet_length(identification) = 16),
    issued_at      timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS jsatl_alarm_numbers_expires_idx ON jsatl_alarm_numbers (expires_at);

-- media of an active-safety alarm: the public alarm key links them (media.alarm_number keeps the
-- issued number the terminal named). Rows stored before 0136 carried the derived value as
-- their number, which is the key.
ALTER TABLE media ADD COLUMN IF NOT EXISTS alarm_key text;
UPDATE media SET alarm_key = alarm_number
    WHERE source = 'jsatl' AND alarm_key IS NULL AND alarm_number IS NOT NULL;
CREATE INDEX IF NOT EXISTS media_alarm_key_idx ON media (alarm_key) WHERE alarm_key IS NOT NULL;
