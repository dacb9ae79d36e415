-- Core tables: registry (companies, vehicles), raw messages, positions, latest positions,
-- rejected messages. Same columns in TimescaleDB and plain PostgreSQL mode; 0002 adds the
-- mode-specific storage (hypertable or BRIN) and the daily summary.

CREATE TABLE IF NOT EXISTS companies (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS vehicles (
    id               bigserial PRIMARY KEY,
    company_id       bigint NOT NULL REFERENCES companies(id),
    plate_number     text NOT NULL,
    plate_color      smallint NOT NULL DEFAULT 2,   -- JT/T 808: 1 blue, 2 yellow, 3 black, 4 white, 9 other
    vehicle_class    text NOT NULL CHECK (vehicle_class IN ('coach', 'tour_bus', 'hazmat', 'heavy_truck', 'freight')),
    terminal_id      text NOT NULL UNIQUE,           -- 终端手机号 or gateway id, as in the MQTT topic
    speed_limit_kmh  real CHECK (speed_limit_kmh IS NULL OR speed_limit_kmh > 0),
    utc_offset_min   smallint NOT NULL DEFAULT 480,  -- terminal clock zone for BCD times (GMT+8)
    night_ban_exempt boolean NOT NULL DEFAULT false, -- 02:00-05:00 coach ban exemption (relay drivers)
    must_connect     boolean NOT NULL DEFAULT true,  -- counts in the 入网率 denominator
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (plate_number, plate_color)
);
CREATE INDEX IF NOT EXISTS vehicles_company_idx ON vehicles (company_id);

-- Every accepted MQTT message exactly as received (evidence: "keep the raw message").
CREATE TABLE IF NOT EXISTS raw_messages (
    id           bigint NOT NULL,
    received_at  timestamptz NOT NULL,
    topic        text NOT NULL,
    payload      bytea NOT NULL,
    PRIMARY KEY (id, received_at)
);
CREATE SEQUENCE IF NOT EXISTS raw_messages_id_seq;

CREATE TABLE IF NOT EXISTS positions (
    vehicle_id      bigint NOT NULL,
    fix_time        timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    latitude        double precision NOT NULL,
    longitude       double precision NOT NULL,
    speed_kmh       real NOT NULL,
    heading_deg     real,
    altitude_m      real,
    satellites      smallint,
    fix_valid       boolean NOT NULL,
    acc_on          boolean,
    alarm_flags     bigint NOT NULL DEFAULT 0,
    status_flags    bigint NOT NULL DEFAULT 0,
    mileage_km      double precision,
    extras          jsonb,
    quality         text NOT NULL CHECK (quality IN ('ok', 'invalid', 'drift')),
    quality_reason  text,
    late            boolean NOT NULL DEFAULT false,
    reupload        boolean NOT NULL DEFAULT false,
    distance_m      double precision,  -- geodesic distance from the previous ok fix (ok fixes only)
    interval_s      double precision,  -- seconds since that previous ok fix
    raw_message_id  bigint,            -- raw_messages.id of the message that carried it
    PRIMARY KEY (vehicle_id, fix_time)
);

-- The live marker: newest ok fix per vehicle (never moved back by late data), plus the time of
-- the newest message of any kind (online/offline).
CREATE TABLE IF NOT EXISTS latest_positions (
    vehicle_id       bigint PRIMARY KEY REFERENCES vehicles(id) ON DELETE CASCADE,
    last_message_at  timestamptz NOT NULL,
    fix_time         timestamptz,
    received_at      timestamptz,
    latitude         double precision,
    longitude        double precision,
    speed_kmh        real,
    heading_deg      real,
    acc_on           boolean,
    alarm_flags      bigint,
    status_flags     bigint,
    mileage_km       double precision
);

CREATE TABLE IF NOT EXISTS rejected_messages (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text NOT NULL,
    payload      bytea NOT NULL,
    terminal_id  text,
    reason       text NOT NULL,   -- malformed_json, missing_field, wrong_type, oversize, unknown_terminal, ...
    detail       text NOT NULL    -- what was expected and what came
);
CREATE INDEX IF NOT EXISTS rejected_messages_received_idx ON rejected_messages (received_at);
