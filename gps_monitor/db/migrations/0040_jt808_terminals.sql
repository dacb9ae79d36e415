-- JT/T 808 gateway: terminals registered over 0x0100 and the auth code each was issued (0x8100),
-- checked again at 0x0102. One row per terminal; a re-registering terminal gets its code again.
CREATE TABLE IF NOT EXISTS jt808_terminals (
    terminal_id       text PRIMARY KEY
                      REFERENCES vehicles(terminal_id) ON DELETE CASCADE ON UPDATE CASCADE,
    auth_code         text NOT NULL,
    phone_bcd         text NOT NULL,      -- BCD digits as sent (12 or 20, leading zeros kept)
    layout            text NOT NULL,      -- 0x0100 body layout: 2011, 2013 or 2019
    province_id       integer,
    city_id           integer,
    maker_id          text,
    model             text,
    device_id         text,               -- 终端ID from 0x0100
    plate_number      text,               -- as the terminal sent it
    plate_color       smallint,
    imei              text,               -- 2019 0x0102
    software_version  text,               -- 2019 0x0102
    registered_at     timestamptz NOT NULL DEFAULT now(),
    last_auth_at      timestamptz
);
