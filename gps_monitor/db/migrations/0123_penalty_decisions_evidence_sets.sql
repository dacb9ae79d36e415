-- Enforcement (issue 11, item 6).
--
-- alarm_penalties (0051) gains what a 行政处罚决定书 carries beyond the decision kind and fine:
-- its number (处罚决定书编号) and the date of the decision, and who last corrected the record and
-- when (each create and edit is also in audit_log with the values before and after).
ALTER TABLE alarm_penalties ADD COLUMN IF NOT EXISTS decision_number text;
ALTER TABLE alarm_penalties ADD COLUMN IF NOT EXISTS decided_on date;
ALTER TABLE alarm_penalties ADD COLUMN IF NOT EXISTS updated_at timestamptz;
ALTER TABLE alarm_penalties ADD COLUMN IF NOT EXISTS updated_by bigint REFERENCES users(id);

-- evidence_sets: one report number per evidence set, whatever format it is downloaded in. A set is
-- what the report is built from: the alarm (or the vehicle, window and speed limit asked for) and
-- the digest of its positions. The PDF, Excel and CSV of one alarm carry the same number as long
-- as the data is the same; data that changed (an open alarm grown, a late fix) is a new set.
-- set_key = SHA-256 over those parts (gps_monitor.db.report_log.evidence_set_key).
CREATE TABLE IF NOT EXISTS evidence_sets (
    report_number  text PRIMARY KEY,
    set_key        text NOT NULL UNIQUE,
    alarm_id       bigint REFERENCES alarms(id),
    vehicle_id     bigint NOT NULL REFERENCES vehicles(id),
    digest_sha256  text NOT NULL CHECK (digest_sha256 ~ '^[0-9a-f]{64}$'),
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS evidence_sets_alarm_idx ON evidence_sets (alarm_id);

-- report_log keeps one entry per report generated (who, when, which format): the formats of one
-- evidence set share its number, so the number is no longer unique in the log.
ALTER TABLE report_log DROP CONSTRAINT IF EXISTS report_log_report_number_key;
CREATE INDEX IF NOT EXISTS report_log_number_idx ON report_log (report_number);
