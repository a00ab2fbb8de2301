-- The identity namespace. Uniqueness (email, slug, membership, service-account name,
-- invitation token) is enforced here, not in code; the adapter maps these constraint names
-- onto Conflict(field). Times are Unix seconds (double precision), as in the port.
-- `seq` columns only order rows created within the same second-fraction (insertion order).
CREATE TABLE IF NOT EXISTS identity.tenants (
    id text CONSTRAINT tenants_pkey PRIMARY KEY,
    slug text NOT NULL CONSTRAINT tenants_slug_key UNIQUE,
    created_at double precision NOT NULL,
    features text[] NOT NULL DEFAULT '{}',
    plan text,
    upstream text,
    require_mfa text[] NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS identity.users (
    id text CONSTRAINT users_pkey PRIMARY KEY,
    email text NOT NULL,
    password_hash text NOT NULL,
    email_verified boolean NOT NULL DEFAULT false,
    created_at double precision NOT NULL
);
-- Emails are unique whatever their case (as SQLite's COLLATE NOCASE).
CREATE UNIQUE INDEX IF NOT EXISTS users_email_key ON identity.users (lower(email));
CREATE TABLE IF NOT EXISTS identity.memberships (
    tenant_id text NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE,
    user_id text NOT NULL REFERENCES identity.users (id) ON DELETE CASCADE,
    roles text[] NOT NULL,
    created_at double precision NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    CONSTRAINT memberships_pkey PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX IF NOT EXISTS memberships_user ON identity.memberships (user_id, created_at, seq);
CREATE TABLE IF NOT EXISTS identity.invitations (
    id text CONSTRAINT invitations_pkey PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE,
    email text NOT NULL,
    role text NOT NULL,
    token_hash text NOT NULL CONSTRAINT invitations_token_hash_key UNIQUE,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    accepted_at double precision,
    -- Deferred: acceptance marks the invitation before it inserts the user.
    accepted_by text REFERENCES identity.users (id) ON DELETE SET NULL
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX IF NOT EXISTS invitations_tenant ON identity.invitations (tenant_id);
CREATE TABLE IF NOT EXISTS identity.operators (
    user_id text PRIMARY KEY REFERENCES identity.users (id) ON DELETE CASCADE,
    granted_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS identity.service_accounts (
    id text CONSTRAINT service_accounts_pkey PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES identity.tenants (id) ON DELETE CASCADE,
    name text NOT NULL,
    roles text[] NOT NULL,
    created_at double precision NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    CONSTRAINT service_accounts_tenant_id_name_key UNIQUE (tenant_id, name),
    CONSTRAINT service_accounts_tenant_id_id_key UNIQUE (tenant_id, id)
);
-- The composite key ties a key to a service account of the SAME tenant, in the schema itself.
CREATE TABLE IF NOT EXISTS identity.api_keys (
    id text CONSTRAINT api_keys_pkey PRIMARY KEY,
    tenant_id text NOT NULL,
    service_account_id text NOT NULL,
    secret_hash text NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision,
    revoked_at double precision,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    FOREIGN KEY (tenant_id, service_account_id)
        REFERENCES identity.service_accounts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS api_keys_account
    ON identity.api_keys (tenant_id, service_account_id, created_at, seq);
