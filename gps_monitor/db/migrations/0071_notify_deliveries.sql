-- The delivery log of `gps-monitor notify` (issue 9, section 3).
--
-- notify_deliveries: one row per (alarm episode, event, channel). The unique key
-- (dedup_key, event, channel_id) makes a redelivered alarm message (the broker resends what was
-- not acknowledged) a no-op: the row exists, nothing is sent twice. The row is written before the
-- MQTT message is acknowledged, with status 'pending' and the message to send; the channel's
-- sender then records every attempt and moves it to sent / failed (attempts exhausted) or
-- suppressed (quiet hours). A restarted service resumes the pending rows.
--
-- notify_attempts: every attempt: when, outcome, reply_code (HTTP status or SMTP reply code), the receiver's
-- reply (truncated), how long it took.
CREATE TABLE IF NOT EXISTS notify_deliveries (
    id               bigserial PRIMARY KEY,
    alarm_id         bigint,
    dedup_key        text NOT NULL,
    event            text NOT NULL CHECK (event IN ('opened', 'closed')),
    alarm_type       text NOT NULL,
    level            smallint NOT NULL CHECK (level BETWEEN 1 AND 4),
    company_id       bigint NOT NULL,
    vehicle_id       bigint NOT NULL,
    channel_id       bigint NOT NULL REFERENCES notify_channels(id) ON DELETE CASCADE,
    kind             text NOT NULL,
    target           text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sent', 'failed', 'suppressed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_reply_code  integer,
    last_reply       text,
    message          jsonb NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dedup_key, event, channel_id)
);
CREATE INDEX IF NOT EXISTS notify_deliveries_pending_idx
    ON notify_deliveries (channel_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS notify_deliveries_alarm_idx ON notify_deliveries (alarm_id);
CREATE INDEX IF NOT EXISTS notify_deliveries_received_idx ON notify_deliveries (received_at);

CREATE TABLE IF NOT EXISTS notify_attempts (
    delivery_id  bigint NOT NULL REFERENCES notify_deliveries(id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    ok           boolean NOT NULL,
    reply_code   integer,
    reply        text,
    duration_ms  integer NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
