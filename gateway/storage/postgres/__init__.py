"""The PostgreSQL backend: the same storage ports as SQLite, for any number of replicas.

`PostgresDatabase.open(url)` acquires the pool, `migrate(db)` / `schema_status(db)` manage the
schema, and `PostgresIdentityStore`, `PostgresSessionStore` and `PostgresTenantRuleStore`
implement the ports over it.
"""
