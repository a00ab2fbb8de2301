-- Secrets (issue 8): envelope-encrypted versions, tenants' KEK settings, webhook replay keys.
-- Values are never stored in plaintext: each version holds its AES-256-GCM ciphertext, nonce
-- and data key wrapped by the tenant's KEK (named by provider, id and version).
CREATE TABLE IF NOT EXISTS secret_keks (
    tenant_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    key_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    material BLOB,
    updated_at REAL NOT NULL
);
-- One row per secret name, kept after deletion so a version number is never reused.
CREATE TABLE IF NOT EXISTS secret_heads (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    last_version INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
CREATE TABLE IF NOT EXISTS secret_versions (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    fmt INTEGER NOT NULL,
    kek_provider TEXT NOT NULL,
    kek_id TEXT NOT NULL,
    kek_version INTEGER NOT NULL,
    wrapped_dek BLOB NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);
CREATE TABLE IF NOT EXISTS webhook_replays (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_replays_expiry ON webhook_replays (expires_at);
