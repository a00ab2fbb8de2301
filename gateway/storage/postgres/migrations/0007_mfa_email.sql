-- Issue 13: TOTP enrolments, recovery codes and e-mailed one-time tokens (identity schema).
-- The TOTP secret is stored sealed (AES-GCM under a key derived from the master key); recovery
-- codes and tokens only as hashes. Rows die with their user.
CREATE TABLE IF NOT EXISTS identity.mfa (
    user_id text PRIMARY KEY REFERENCES identity.users (id) ON DELETE CASCADE,
    secret_ciphertext text NOT NULL,
    created_at double precision NOT NULL,
    enabled_at double precision,
    last_step bigint NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS identity.recovery_codes (
    user_id text NOT NULL REFERENCES identity.users (id) ON DELETE CASCADE,
    code_hash text NOT NULL,
    used_at double precision,
    PRIMARY KEY (user_id, code_hash)
);
CREATE TABLE IF NOT EXISTS identity.email_tokens (
    token_hash text PRIMARY KEY,
    user_id text NOT NULL REFERENCES identity.users (id) ON DELETE CASCADE,
    purpose text NOT NULL CHECK (purpose IN ('verify', 'reset')),
    email text NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    used_at double precision
);
CREATE INDEX IF NOT EXISTS email_tokens_user ON identity.email_tokens (user_id, purpose);
