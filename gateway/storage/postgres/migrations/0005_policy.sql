-- Policy rules each tenant stores for itself. There is no domain column: a row's domain is
-- its tenant_id, so a stored rule cannot name `*` or another tenant.
CREATE TABLE IF NOT EXISTS gateway.policy_rules (
    tenant_id text NOT NULL,
    position integer NOT NULL,
    sub text NOT NULL,
    obj text NOT NULL,
    act text NOT NULL,
    eft text NOT NULL CHECK (eft IN ('allow', 'deny')),
    PRIMARY KEY (tenant_id, position),
    UNIQUE (tenant_id, sub, obj, act, eft)
);
