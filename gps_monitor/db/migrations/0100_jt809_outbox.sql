-- JT/T 809 (issue 10): what the lower platform owes the superior and could not send live.
-- Positions accepted while the main link was down, late (blind-area) positions, alarms raised
-- while it was down, and what was written just before a link broke: sent as 0x1203 / 0x1402
-- when the link is up, oldest fix first, then deleted. A restart resumes from this table.
CREATE TABLE IF NOT EXISTS jt809_outbox (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('position', 'alarm')),
    vehicle_id  bigint NOT NULL,
    fix_time    timestamptz NOT NULL,            -- position fix time, alarm start
    payload     jsonb NOT NULL,                  -- Position.to_dict() or Alarm.to_dict()
    reason      text NOT NULL CHECK (reason IN ('link_down', 'late', 'cut')),
    queued_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS jt809_outbox_order_idx ON jt809_outbox (fix_time, id);

-- Main-link sessions, for 平台连通率 (main link up time / period).
CREATE TABLE IF NOT EXISTS jt809_link_sessions (
    id          bigserial PRIMARY KEY,
    up_at       timestamptz NOT NULL,
    down_at     timestamptz,
    down_reason text
);
