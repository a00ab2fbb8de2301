-- Step-up MFA (issue 13): when a code was last proven on the session (Unix seconds; NULL:
-- never). Admin actions of users with MFA on need a recent one.
ALTER TABLE gateway.sessions ADD COLUMN IF NOT EXISTS mfa_at double precision;
