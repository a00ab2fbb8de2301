-- Per-tenant settings beyond features and plan: a dedicated upstream (the silo path) and the
-- roles that must use MFA.
ALTER TABLE identity_tenants ADD COLUMN upstream TEXT;
ALTER TABLE identity_tenants ADD COLUMN require_mfa TEXT NOT NULL DEFAULT '[]';
