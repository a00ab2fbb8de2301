-- The identity namespace: every table is prefixed identity_ and referenced by nothing else.
-- Uniqueness (email, slug, membership, service-account name) is enforced here, not in code.
CREATE TABLE IF NOT EXISTS identity_tenants (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    features TEXT NOT NULL DEFAULT '[]',
    plan TEXT
);
CREATE TABLE IF NOT EXISTS identity_users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    email_verified INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS identity_memberships (
    tenant_id TEXT NOT NULL REFERENCES identity_tenants (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES identity_users (id) ON DELETE CASCADE,
    roles TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX IF NOT EXISTS identity_memberships_user
    ON identity_memberships (user_id, created_at);
CREATE TABLE IF NOT EXISTS identity_invitations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES identity_tenants (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    accepted_at REAL,
    accepted_by TEXT REFERENCES identity_users (id) ON DELETE SET NULL
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX IF NOT EXISTS identity_invitations_tenant ON identity_invitations (tenant_id);
CREATE TABLE IF NOT EXISTS identity_operators (
    user_id TEXT PRIMARY KEY REFERENCES identity_users (id) ON DELETE CASCADE,
    granted_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS identity_service_accounts (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES identity_tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
);
-- The composite key ties a key to a service account of the SAME tenant, in the schema itself.
CREATE TABLE IF NOT EXISTS identity_api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    service_account_id TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL,
    FOREIGN KEY (tenant_id, service_account_id)
        REFERENCES identity_service_accounts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS identity_api_keys_account
    ON identity_api_keys (tenant_id, service_account_id, created_at);
