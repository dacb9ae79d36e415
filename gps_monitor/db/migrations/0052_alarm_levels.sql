-- Alarm levels (issue 9): 1 紧急, 2 严重, 3 一般, 4 提示. The rules engine decides the level when
-- an alarm opens (gps_monitor/alarm_levels.py, level_for) and stores it here; it is never changed
-- afterwards, so a later change of GPS_MONITOR_ALARMS_LEVELS does not relevel old alarms.
-- The default 3 only covers rows written by something other than the rules engine.
ALTER TABLE alarms ADD COLUMN IF NOT EXISTS level smallint DEFAULT 3
    CHECK (level BETWEEN 1 AND 4);

-- Backfill the rows raised before this migration with the shipped defaults (DEFAULT_LEVELS in
-- alarm_levels.py; tests/test_alarm_levels.py checks that both agree). Settings overrides cannot
-- be seen from SQL: an installation that overrides levels relevels old rows itself if it wants.
UPDATE alarms a SET level = CASE
        WHEN a.alarm_type = 'device_alarm' AND a.details ->> 'name' = 'sos' THEN 1
        WHEN a.alarm_type = 'forbidden_area_entry' AND v.vehicle_class = 'hazmat' THEN 1
        WHEN a.alarm_type = 'offline_displacement' THEN 1
        WHEN a.alarm_type IN ('overspeed', 'fatigue_driving', 'daily_driving_limit', 'night_ban',
                              'route_deviation', 'forbidden_area_entry', 'keep_in_area_exit') THEN 2
        WHEN a.alarm_type IN ('fatigue_warning', 'geofence_enter', 'geofence_exit',
                              'device_alarm') THEN 3
        WHEN a.alarm_type = 'offline' AND v.vehicle_class = 'hazmat' THEN 3
        WHEN a.alarm_type = 'offline' THEN 4
        ELSE 3
    END
FROM vehicles v
WHERE v.id = a.vehicle_id;
ALTER TABLE alarms ALTER COLUMN level SET NOT NULL;

-- The alarm list's order: unhandled (open, acknowledged) first, then by level, then newest.
-- Bureau users list every company, operators their own.
CREATE INDEX IF NOT EXISTS alarms_worklist_idx
    ON alarms ((status IN ('handled', 'closed')), level, started_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS alarms_company_worklist_idx
    ON alarms (company_id, (status IN ('handled', 'closed')), level, started_at DESC, id DESC);
