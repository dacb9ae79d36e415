-- Issue 12 items 4, 5 and 9: what a JT/T 808 terminal answers besides a result code, and the
-- terminal data the gateway keeps as it came.
--
-- commands.result_body: the terminal's answer body for commands that have one (0x0104
-- parameter list of query_params, 0x0201 position of query_position), as the gateway decoded
-- it (cmd_result `body`, contract in gps_monitor/commands.py). NULL for a bare 0x0001 answer.
ALTER TABLE commands ADD COLUMN IF NOT EXISTS result_body jsonb;

-- terminal_uploads: 0x0900 data pass-through (透传), 0x0705 CAN bus data and 0x0108 upgrade
-- results, one row per message, the body as received (raw bytes) beside what we read from it
-- (pass-through type, CAN item count and first receive time, upgrade type and result). Written
-- by the JT/T 808 gateway before it answers the terminal 0x8001 result 0.
CREATE TABLE IF NOT EXISTS terminal_uploads (
    id           bigserial PRIMARY KEY,
    terminal_id  text NOT NULL,
    vehicle_id   bigint REFERENCES vehicles(id) ON DELETE SET NULL,
    msg_id       integer NOT NULL,            -- 0x0900, 0x0705, 0x0108
    kind         text NOT NULL CHECK (kind IN ('pass_through', 'can_data', 'upgrade_result')),
    body         bytea NOT NULL,              -- the message body as received (unescaped)
    frame_sha256 text NOT NULL,               -- SHA-256 of the frame(s) as received on the wire
    decoded      jsonb NOT NULL DEFAULT '{}'::jsonb,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS terminal_uploads_terminal_idx
    ON terminal_uploads (terminal_id, received_at);
