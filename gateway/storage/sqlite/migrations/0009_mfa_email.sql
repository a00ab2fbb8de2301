-- Issue 13: TOTP enrolments, recovery codes and e-mailed one-time tokens (identity namespace).
-- The TOTP secret is stored sealed (AES-GCM under a key derived from the master key); recovery
-- codes and tokens only as hashes. Rows die with their user.
CREATE TABLE IF NOT EXISTS identity_mfa (
    user_id TEXT PRIMARY KEY REFERENCES identity_users (id) ON DELETE CASCADE,
    secret_ciphertext TEXT NOT NULL,
    created_at REAL NOT NULL,
    enabled_at REAL,
    last_step INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS identity_recovery_codes (
    user_id TEXT NOT NULL REFERENCES identity_users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at REAL,
    PRIMARY KEY (user_id, code_hash)
);
CREATE TABLE IF NOT EXISTS identity_email_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES identity_users (id) ON DELETE CASCADE,
    purpose TEXT NOT NULL CHECK (purpose IN ('verify', 'reset')),
    email TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL
);
CREATE INDEX IF NOT EXISTS identity_email_tokens_user
    ON identity_email_tokens (user_id, purpose);
