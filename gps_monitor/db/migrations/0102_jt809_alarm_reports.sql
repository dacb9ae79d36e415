-- JT/T 809 (issue 10 review): which frame told the superior about each alarm, so that the 2019
-- 0x1412 (alarm handling result) can quote it: SOURCE_DATA_TYPE and SOURCE_MSG_SN. For an alarm
-- this platform reported, the 0x1402 frame's serial (the last one, when it went up more than
-- once); for an alarm the superior raised, its 0x9402 / 0x9403 frame's serial.
CREATE TABLE IF NOT EXISTS jt809_alarm_reports (
    alarm_id     bigint PRIMARY KEY,  -- alarms.id (no FK: a report must never fail)
    data_type    integer NOT NULL,      -- 0x1402, 0x9402 or 0x9403
    msg_sn       bigint NOT NULL,       -- that frame's serial number (u32)
    reported_at  timestamptz NOT NULL DEFAULT now()
);
-- A row goes when its 0x1412 is sent (an alarm is handled once).
