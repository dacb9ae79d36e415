-- Issue 12 item 7: every JT/T 808 0x0702 driver identity report is kept as received in
-- terminal_uploads (kind 'driver_identity'), beside what was read from it or why it could not be
-- read: the raw card report is the evidence behind a driver session, and a report that fits no
-- layout is not lost.
ALTER TABLE terminal_uploads DROP CONSTRAINT IF EXISTS terminal_uploads_kind_check;
ALTER TABLE terminal_uploads ADD CONSTRAINT terminal_uploads_kind_check
    CHECK (kind IN ('pass_through', 'can_data', 'upgrade_result', 'driver_identity'));
