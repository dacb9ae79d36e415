-- Photo and video evidence (issue 12 items 6 and 8): one row per media item a terminal uploaded,
-- by JT/T 808 0x0801 (source 'jt808') or to the T/JSATL 12-2017 attachment server ('jsatl').
-- The bytes live in the media folder under their SHA-256 (gps_monitor/media_store.py); this row
-- says what they are, where and when they were taken, and which alarm / command they belong to.
-- Written by the JT/T 808 gateway; read by web and the evidence report. Kept like the alarms they
-- prove (violation records: 3 years, DOMAIN.md).
CREATE TABLE IF NOT EXISTS media (
    id                bigserial PRIMARY KEY,
    source            text NOT NULL CHECK (source IN ('jt808', 'jsatl')),
    terminal_id       text NOT NULL,
    vehicle_id        bigint REFERENCES vehicles(id),
    company_id        bigint REFERENCES companies(id),
    sha256            text CHECK (sha256 ~ '^[0-9a-f]{64}$'),   -- NULL: nothing could be stored
    size_bytes        bigint NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),
    media_type        text NOT NULL,                 -- image / audio / video / text / other
    content_type      text NOT NULL,                 -- MIME type we serve it as
    -- JT/T 808 0x0800 / 0x0801 metadata
    multimedia_id     bigint,
    format_code       smallint,
    event_code        smallint,
    channel           smallint,
    -- the position carried in 0x0801 (its 28-byte location basic information), in our units;
    -- (vehicle_id, fix_time) names the stored position when ingest kept one at that time
    fix_time          timestamptz,
    latitude          double precision,
    longitude         double precision,
    speed_kmh         real,
    alarm_flags       bigint,
    status_flags      bigint,
    -- links
    alarm_id          bigint REFERENCES alarms(id),
    command_id        bigint REFERENCES commands(id),
    alarm_number      text,              -- T/JSATL 报警编号 (item 8), also in the alarm's details
    file_name         text,              -- as the terminal named it: shown, never used as a path
    -- completeness: an upload that lost packets is kept with what came and why it is incomplete
    complete          boolean NOT NULL,
    incomplete_reason text,
    missing           integer[],          -- missing packet indexes (0x0801) or segment offsets
    received_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (complete OR incomplete_reason IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS media_alarm_idx ON media (alarm_id) WHERE alarm_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS media_alarm_number_idx ON media (alarm_number)
    WHERE alarm_number IS NOT NULL;
CREATE INDEX IF NOT EXISTS media_vehicle_idx ON media (vehicle_id, received_at);
