-- Secrets (issue 8): envelope-encrypted versions, tenants' KEK settings, webhook replay keys.
-- Values are never stored in plaintext: each version holds its AES-256-GCM ciphertext, nonce
-- and data key wrapped by the tenant's KEK (named by provider, id and version).
CREATE TABLE IF NOT EXISTS gateway.secret_keks (
    tenant_id text PRIMARY KEY,
    provider text NOT NULL,
    key_id text NOT NULL,
    version integer NOT NULL,
    material bytea,
    updated_at double precision NOT NULL
);
-- One row per secret name, kept after deletion so a version number is never reused.
CREATE TABLE IF NOT EXISTS gateway.secret_heads (
    tenant_id text NOT NULL,
    name text NOT NULL,
    last_version integer NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
CREATE TABLE IF NOT EXISTS gateway.secret_versions (
    tenant_id text NOT NULL,
    name text NOT NULL,
    version integer NOT NULL,
    fmt integer NOT NULL,
    kek_provider text NOT NULL,
    kek_id text NOT NULL,
    kek_version integer NOT NULL,
    wrapped_dek bytea NOT NULL,
    nonce bytea NOT NULL,
    ciphertext bytea NOT NULL,
    created_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);
CREATE TABLE IF NOT EXISTS gateway.webhook_replays (
    key text PRIMARY KEY,
    expires_at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_replays_expiry ON gateway.webhook_replays (expires_at);
