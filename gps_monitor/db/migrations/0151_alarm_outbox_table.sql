-- The alarm outbox (migration 0022) as its own narrow table (issue 13). A flag on alarms made
-- every published change write the alarm row a second time: a new version of a wide row and an
-- entry in each of its eight indexes (the flag is in a partial index's predicate, so the update
-- is never HOT), for each of the thousands of events a burst of alarms brings. A row here is
-- inserted in the transaction that changes the alarm and deleted once its MQTT message has the
-- broker's PUBACK; pending_publications reads it joined with alarms.
-- change_id (from its own sequence, set anew each time the alarm is queued again): a PUBACK
-- deletes the row only if it is not newer than the change that was published, so a message
-- acknowledged while a later change of the same alarm waits to be published does not take
-- that later change out of the outbox (mark_published).
-- No foreign key: its per-row check would cost a trigger per event; an alarm deleted while its
-- row is here is simply not published (the join finds nothing).
CREATE TABLE IF NOT EXISTS alarm_outbox (alarm_id bigint PRIMARY KEY, change_id bigserial);
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_name = 'alarms' AND column_name = 'publish_pending') THEN
        INSERT INTO alarm_outbox (alarm_id)
        SELECT id FROM alarms WHERE publish_pending ORDER BY updated_at, id ON CONFLICT DO NOTHING;
        DROP INDEX IF EXISTS alarms_publish_pending_idx;
        ALTER TABLE alarms DROP COLUMN publish_pending;
    END IF;
END
$$;
