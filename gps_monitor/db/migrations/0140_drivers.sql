-- Issue 12 item 7: drivers identified by their road transport qualification certificate
-- (从业资格证) IC card, JT/T 808 0x0702.
--
-- drivers: one row per certificate number (the card's identity; the name and the issuing
-- authority are as the card last said). Written by the JT/T 808 gateway on each card read.
CREATE TABLE IF NOT EXISTS drivers (
    certificate_no    text PRIMARY KEY,            -- 从业资格证号
    name              text,
    issuing_authority text,                        -- 发证机构
    valid_until       date,                        -- certificate validity
    id_card_no        text,                        -- 身份证号 (2011 and 2019 layouts)
    first_seen_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at      timestamptz NOT NULL DEFAULT now()
);

-- driver_sessions: who drove which vehicle when (card inserted -> removed). At most one open
-- session per vehicle: a card inserted while another is in closes the other at that time
-- (ended_by 'replaced'); card_out_at NULL = still in. Times are the card times the terminal
-- reported (converted to UTC with the vehicle's terminal clock zone).
CREATE TABLE IF NOT EXISTS driver_sessions (
    id              bigserial PRIMARY KEY,
    vehicle_id      bigint NOT NULL REFERENCES vehicles(id) ON DELETE CASCADE,
    terminal_id     text NOT NULL,
    certificate_no  text NOT NULL REFERENCES drivers(certificate_no),
    card_in_at      timestamptz NOT NULL,
    card_out_at     timestamptz,
    ended_by        text CHECK (ended_by IN ('removed', 'replaced')),
    raw_in_hex      text NOT NULL                 -- the 0x0702 body that opened it
);
CREATE INDEX IF NOT EXISTS driver_sessions_vehicle_idx
    ON driver_sessions (vehicle_id, card_in_at);
CREATE UNIQUE INDEX IF NOT EXISTS driver_sessions_one_open
    ON driver_sessions (vehicle_id) WHERE card_out_at IS NULL;
