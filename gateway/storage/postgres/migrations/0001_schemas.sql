-- Two schemas: `identity` holds the identity namespace (tenants, users, memberships,
-- invitations, operators, service accounts, API keys) and nothing else; `gateway` holds
-- everything else (sessions, policy rules, audit events, migration bookkeeping).
CREATE SCHEMA IF NOT EXISTS identity;
CREATE SCHEMA IF NOT EXISTS gateway;
-- Installation metadata: one row per key (installation id).
CREATE TABLE IF NOT EXISTS gateway.meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO gateway.meta (key, value)
    VALUES ('installation_id', replace(gen_random_uuid()::text, '-', ''))
    ON CONFLICT (key) DO NOTHING;
