-- Installation metadata: one row per key (installation id, created_at).
CREATE TABLE IF NOT EXISTS gateway_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT OR IGNORE INTO gateway_meta (key, value) VALUES ('installation_id', lower(hex(randomblob(16))));
