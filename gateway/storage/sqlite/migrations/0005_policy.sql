-- Policy rules each tenant stores for itself. There is no domain column: a row's domain is
-- its tenant_id, so a stored rule cannot name `*` or another tenant.
CREATE TABLE IF NOT EXISTS policy_rules (
    tenant_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    sub TEXT NOT NULL,
    obj TEXT NOT NULL,
    act TEXT NOT NULL,
    eft TEXT NOT NULL CHECK (eft IN ('allow', 'deny')),
    PRIMARY KEY (tenant_id, position),
    UNIQUE (tenant_id, sub, obj, act, eft)
);
