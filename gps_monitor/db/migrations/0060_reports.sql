-- Reports and legal holds (issue 5).
--
-- report_log: every evidence or KPI report generated (number, who, when, from what, digest), so a
-- printed report can be traced back and its digest checked against the data.
--
-- legal_holds + held_positions + held_raw_messages: sealing a vehicle and window after an accident
-- COPIES the window's positions and the raw MQTT messages that carried them into the held_* tables.
-- No retention touches these tables: TimescaleDB's retention policy drops whole chunks of
-- positions/raw_messages whatever rows they hold, so only a copy outside the hypertables truly
-- holds. (The plain-PostgreSQL retention job, gps_monitor.db.retention, additionally skips rows
-- under an active hold.) Held copies go only once the hold is released and the data has aged
-- past the retention period.

CREATE TABLE IF NOT EXISTS report_log (
    id              bigserial PRIMARY KEY,
    report_number   text NOT NULL UNIQUE,
    kind            text NOT NULL CHECK (kind IN ('evidence', 'kpi')),
    format          text NOT NULL CHECK (format IN ('pdf', 'xlsx', 'csv', 'json')),
    alarm_id        bigint REFERENCES alarms(id),
    vehicle_id      bigint REFERENCES vehicles(id),
    company_id      bigint REFERENCES companies(id),
    window_start    timestamptz,
    window_end      timestamptz,
    generated_at    timestamptz NOT NULL DEFAULT now(),
    generated_by    text NOT NULL,
    user_id         bigint REFERENCES users(id),
    digest_sha256   text CHECK (digest_sha256 IS NULL OR digest_sha256 ~ '^[0-9a-f]{64}$'),
    record_count    integer,
    parameters      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS report_log_alarm_idx ON report_log (alarm_id);
CREATE INDEX IF NOT EXISTS report_log_generated_idx ON report_log (generated_at);
CREATE SEQUENCE IF NOT EXISTS report_number_seq;

CREATE TABLE IF NOT EXISTS legal_holds (
    id                 bigserial PRIMARY KEY,
    vehicle_id         bigint NOT NULL REFERENCES vehicles(id),
    window_start       timestamptz NOT NULL,
    window_end         timestamptz NOT NULL,
    reason             text NOT NULL,
    case_number        text,
    sealed_at          timestamptz NOT NULL DEFAULT now(),
    sealed_by          text NOT NULL,
    positions_held     integer NOT NULL DEFAULT 0,
    raw_messages_held  integer NOT NULL DEFAULT 0,
    digest_sha256      text,
    released_at        timestamptz,
    released_by        text,
    release_reason     text,
    CHECK (window_end > window_start)
);
CREATE INDEX IF NOT EXISTS legal_holds_vehicle_idx ON legal_holds (vehicle_id, window_start);

CREATE TABLE IF NOT EXISTS held_positions (
    hold_id         bigint NOT NULL REFERENCES legal_holds(id),
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
    quality         text NOT NULL,
    quality_reason  text,
    late            boolean NOT NULL DEFAULT false,
    reupload        boolean NOT NULL DEFAULT false,
    distance_m      double precision,
    interval_s      double precision,
    raw_message_id  bigint,
    PRIMARY KEY (hold_id, vehicle_id, fix_time)
);
CREATE INDEX IF NOT EXISTS held_positions_vehicle_idx ON held_positions (vehicle_id, fix_time);

CREATE TABLE IF NOT EXISTS held_raw_messages (
    hold_id      bigint NOT NULL REFERENCES legal_holds(id),
    id           bigint NOT NULL,
    received_at  timestamptz NOT NULL,
    topic        text NOT NULL,
    payload      bytea NOT NULL,
    PRIMARY KEY (hold_id, id)
);
CREATE INDEX IF NOT EXISTS held_raw_messages_id_idx ON held_raw_messages (id);
