-- JT/T 809 duty exchange (issue 10): what the superior asks and how this platform answers.

-- The outbox also carries the answers owed to the superior: 0x1301 (查岗), 0x1401 (督办),
-- 0x1412 (alarm handled), 0x1503 (relayed text answered), 0x1201 (vehicle registration).
-- These are sent before buffered positions; platform-level ones have no vehicle.
ALTER TABLE jt809_outbox DROP CONSTRAINT IF EXISTS jt809_outbox_kind_check;
ALTER TABLE jt809_outbox ADD CONSTRAINT jt809_outbox_kind_check CHECK (kind IN (
    'position', 'alarm', 'query_answer', 'supervision_answer', 'alarm_result', 'text_answer',
    'registration'));
ALTER TABLE jt809_outbox DROP CONSTRAINT IF EXISTS jt809_outbox_reason_check;
ALTER TABLE jt809_outbox ADD CONSTRAINT jt809_outbox_reason_check CHECK (reason IN (
    'link_down', 'late', 'cut', 'answer', 'registration'));
ALTER TABLE jt809_outbox ALTER COLUMN vehicle_id DROP NOT NULL;
CREATE INDEX IF NOT EXISTS jt809_outbox_answers_idx ON jt809_outbox (id) WHERE kind <> 'position';

-- 0x9301 查岗: one row per question received; answered from the bureau duty page (or by the
-- named company's operators when the object is a company). 平台查岗响应率 = answered by the
-- deadline / received, per local day of receipt.
CREATE TABLE IF NOT EXISTS jt809_platform_queries (
    id               bigserial PRIMARY KEY,
    info_id          bigint NOT NULL,                 -- INFO_ID, quoted in 0x1301
    msg_sn           bigint NOT NULL,                 -- the 0x9301 frame's serial (2019 answer)
    object_type      smallint NOT NULL,               -- 1 platform, 2 one company, 3 all companies
    object_id        text NOT NULL,
    company_id       bigint REFERENCES companies(id), -- the company named (object type 2)
    question         text NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    deadline         timestamptz NOT NULL,
    answer           text,
    answered_at      timestamptz,
    answered_by      bigint REFERENCES users(id),
    CHECK ((answer IS NULL) = (answered_at IS NULL))
);
CREATE INDEX IF NOT EXISTS jt809_platform_queries_received_idx
    ON jt809_platform_queries (received_at);

-- 0x9401 督办 becomes a supervision order on the vehicle's company (the 督办 workflow of
-- migration 0081): issued by the superior platform, not by a user.
ALTER TABLE supervisions ALTER COLUMN issued_by DROP NOT NULL;
ALTER TABLE supervisions ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT 'bureau'
    CHECK (source IN ('bureau', 'superior'));
ALTER TABLE supervisions ADD COLUMN IF NOT EXISTS superior_info_id bigint;  -- SUPERVISION_ID
ALTER TABLE supervisions ADD COLUMN IF NOT EXISTS vehicle_id bigint REFERENCES vehicles(id);
ALTER TABLE supervisions DROP CONSTRAINT IF EXISTS supervisions_issuer_check;
ALTER TABLE supervisions ADD CONSTRAINT supervisions_issuer_check
    CHECK (issued_by IS NOT NULL OR source = 'superior');

-- 0x9503 texts relayed to a terminal through the downlink command channel; answered with
-- 0x1503 once the command reaches a final state.
CREATE TABLE IF NOT EXISTS jt809_relayed_texts (
    command_row_id   bigint PRIMARY KEY REFERENCES commands(id),
    msg_sequence     bigint NOT NULL,
    msg_sn           bigint NOT NULL,
    plate_number     text NOT NULL,
    plate_color      smallint NOT NULL,
    answered_up_at   timestamptz
);
CREATE INDEX IF NOT EXISTS jt809_relayed_texts_open_idx
    ON jt809_relayed_texts (command_row_id) WHERE answered_up_at IS NULL;

-- Link state for the bureau page (written by `gps-monitor jt809`): one row per link.
CREATE TABLE IF NOT EXISTS jt809_link_status (
    link        text PRIMARY KEY CHECK (link IN ('main', 'slave')),
    status      text NOT NULL,
    counters    jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
