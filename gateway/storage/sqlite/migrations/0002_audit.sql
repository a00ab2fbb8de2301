-- Append-only audit events; one hash chain per tenant plus the platform chain.
CREATE TABLE IF NOT EXISTS audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    chain TEXT NOT NULL,
    ts REAL NOT NULL,
    tenant_id TEXT,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    record TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_chain ON audit_events (chain, seq);
CREATE INDEX IF NOT EXISTS audit_events_tenant ON audit_events (tenant_id, seq);
