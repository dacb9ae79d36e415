-- Web users, login tokens and the audit trail (issue 4). Roles: bureau (county transport bureau,
-- sees everything), operator (one company only), enforcement (reads everything, records
-- penalties). Passwords are argon2id hashes (argon2-cffi); tokens are stored only as an HMAC.
CREATE TABLE IF NOT EXISTS users (
    id             bigserial PRIMARY KEY,
    username       text NOT NULL UNIQUE,
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('bureau', 'operator', 'enforcement')),
    company_id     bigint REFERENCES companies(id),
    display_name   text,
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'operator') = (company_id IS NOT NULL))
);

CREATE TABLE IF NOT EXISTS user_tokens (
    token_hash   text PRIMARY KEY,          -- hex HMAC-SHA256(secret_key, token)
    user_id      bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS user_tokens_user_idx ON user_tokens (user_id);

-- Who did what, when: every alarm change, penalty, registry and geofence edit.
CREATE TABLE IF NOT EXISTS audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    user_id      bigint REFERENCES users(id),
    username     text NOT NULL,
    role         text NOT NULL,
    action       text NOT NULL,              -- alarm.acknowledge, alarm.handle, alarm.penalty, ...
    object_type  text NOT NULL,              -- alarm, vehicle, company, geofence, route, user
    object_id    bigint,
    company_id   bigint,
    details      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS audit_log_object_idx ON audit_log (object_type, object_id, at);
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON audit_log (at);
