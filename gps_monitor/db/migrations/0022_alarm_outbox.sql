-- Alarm outbox: an alarm row changed by the rules engine is marked publish_pending in the same
-- transaction; the flag is cleared once its MQTT message has the broker's PUBACK. A rules worker
-- that loses the broker or dies in between republishes the pending ones when it reconnects, so
-- every stored alarm change reaches alarms/v1/... at least once.
ALTER TABLE alarms ADD COLUMN IF NOT EXISTS publish_pending boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS alarms_publish_pending_idx ON alarms (id) WHERE publish_pending;
