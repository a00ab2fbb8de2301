-- Append-only audit events; one hash chain per tenant plus the platform chain. `record` is
-- the event's JSON exactly as hashed (json keeps the text as written, unlike jsonb).
CREATE TABLE IF NOT EXISTS gateway.audit_events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL CONSTRAINT audit_events_id_key UNIQUE,
    chain text NOT NULL,
    ts double precision NOT NULL,
    tenant_id text,
    action text NOT NULL,
    outcome text NOT NULL,
    record json NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    -- A chain never forks: two events cannot link to the same predecessor.
    CONSTRAINT audit_events_chain_prev_key UNIQUE (chain, prev_hash)
);
CREATE INDEX IF NOT EXISTS audit_events_chain ON gateway.audit_events (chain, seq);
CREATE INDEX IF NOT EXISTS audit_events_tenant ON gateway.audit_events (tenant_id, seq);
