-- Push channels and subscription rules of `gps-monitor notify` (issue 9, section 3).
--
-- notify_channels: where a notification goes. kind is one of wecom, dingtalk, feishu, webhook,
-- email, sms (validated in Python, notify/channels.py, at the API and when the service starts,
-- so adding a kind needs no migration). config holds the non-secret part (url, recipients...);
-- secret holds the signing secret (dingtalk/feishu/webhook). The web API never returns the
-- secret and the service never logs it.
--
-- notify_subscriptions: which alarms go to a channel. Owned by a user (user_id; their own
-- subscriptions, managed in the page) or by nobody (user_id NULL: a company-wide rule, managed by
-- the bureau). company_id restricts the alarms to one company (always set for an operator's);
-- NULL = every company. NULL alarm_types / vehicle_ids = all. min_level: deliver alarms of this
-- level or more severe (1 紧急 .. 4 提示). Quiet hours are local times (notify.timezone,
-- Asia/Shanghai); both or neither; a window may cross midnight (22:00-07:00).
CREATE TABLE IF NOT EXISTS notify_channels (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL,
    config      jsonb NOT NULL DEFAULT '{}'::jsonb,
    secret      text,
    user_id     bigint REFERENCES users(id) ON DELETE CASCADE,
    company_id  bigint REFERENCES companies(id),
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS notify_channels_user_idx ON notify_channels (user_id);

CREATE TABLE IF NOT EXISTS notify_subscriptions (
    id                bigserial PRIMARY KEY,
    channel_id        bigint NOT NULL REFERENCES notify_channels(id) ON DELETE CASCADE,
    user_id           bigint REFERENCES users(id) ON DELETE CASCADE,
    company_id        bigint REFERENCES companies(id),
    alarm_types       text[],
    vehicle_ids       bigint[],
    min_level         smallint NOT NULL DEFAULT 4 CHECK (min_level BETWEEN 1 AND 4),
    events            text[] NOT NULL DEFAULT '{opened,closed}',
    quiet_start_local time,
    quiet_end_local   time,
    enabled           boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((quiet_start_local IS NULL) = (quiet_end_local IS NULL))
);
CREATE INDEX IF NOT EXISTS notify_subscriptions_channel_idx ON notify_subscriptions (channel_id);
CREATE INDEX IF NOT EXISTS notify_subscriptions_user_idx ON notify_subscriptions (user_id);
