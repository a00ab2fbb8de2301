-- User sessions. Only the SHA-256 of the cookie value is stored (token_hash); `id` is the
-- public id shown by APIs and audit. Times are Unix seconds. `rotate_pending` marks sessions
-- whose next use rotates the token (after a privilege change).
CREATE TABLE IF NOT EXISTS gateway.sessions (
    id text CONSTRAINT sessions_pkey PRIMARY KEY,
    token_hash text NOT NULL CONSTRAINT sessions_token_hash_key UNIQUE,
    user_id text NOT NULL,
    tenant_id text NOT NULL,
    created_at double precision NOT NULL,
    last_seen_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    idle_timeout integer NOT NULL,
    auth_method text NOT NULL,
    mfa boolean NOT NULL DEFAULT false,
    mfa_pending boolean NOT NULL DEFAULT false,
    ip text,
    user_agent text,
    revoked_at double precision,
    rotate_pending boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS sessions_user ON gateway.sessions (user_id, revoked_at);
CREATE INDEX IF NOT EXISTS sessions_tenant ON gateway.sessions (tenant_id, revoked_at);
CREATE INDEX IF NOT EXISTS sessions_expires ON gateway.sessions (expires_at);
