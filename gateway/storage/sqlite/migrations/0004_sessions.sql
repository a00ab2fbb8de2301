-- User sessions. Only the SHA-256 of the cookie value is stored (token_hash); `id` is the
-- public id shown by APIs and audit. Times are Unix seconds.
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    idle_timeout INTEGER NOT NULL,
    auth_method TEXT NOT NULL,
    mfa INTEGER NOT NULL DEFAULT 0,
    mfa_pending INTEGER NOT NULL DEFAULT 0,
    ip TEXT,
    user_agent TEXT,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id, revoked_at);
CREATE INDEX IF NOT EXISTS sessions_tenant ON sessions (tenant_id, revoked_at);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires_at);
