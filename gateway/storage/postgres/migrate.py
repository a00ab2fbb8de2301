"""Versioned schema migrations for PostgreSQL, safe to run from many replicas at once.

Guarantees:

* each migration runs in its own transaction under one cluster-wide advisory lock, and the
  applied versions are re-read inside the lock, so of any number of concurrent migrators
  each migration is applied exactly once and a failing migration leaves no trace;
* running `migrate` on an up-to-date database changes nothing (it does not even take the
  lock);
* a database whose recorded checksums differ from the shipped files, or that is newer than
  the code, is refused with `MigrationError` (see `gateway.storage.migrations`);
* `schema_status` only reads: it works with a role that may not create anything.
"""

from __future__ import annotations

import time

from gateway.storage.migrations import (
    Migration,
    SchemaStatus,
    load_migrations,
    verify_applied,
)
from gateway.storage.postgres.database import Connection, PostgresDatabase

__all__ = ["MIGRATIONS_PACKAGE", "migrate", "schema_status"]

MIGRATIONS_PACKAGE = "gateway.storage.postgres"

# The two-key advisory lock space is separate from the one-key space the audit chains use.
_LOCK = "SELECT pg_advisory_xact_lock(1734440037, 1)"  # 1734440037 is b"gate" as an int4
_BOOKKEEPING = """
CREATE SCHEMA IF NOT EXISTS gateway;
CREATE TABLE IF NOT EXISTS gateway.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at double precision NOT NULL
);
"""
_APPLIED = "SELECT version, checksum FROM gateway.schema_migrations"
_RECORD = (
    "INSERT INTO gateway.schema_migrations (version, name, checksum, applied_at) "
    "VALUES ($1, $2, $3, $4)"
)


async def _applied(conn: Connection) -> dict[int, str]:
    """The recorded versions and checksums; empty when the bookkeeping table is missing."""
    if await conn.fetchval("SELECT to_regclass('gateway.schema_migrations')") is None:
        return {}
    return {int(row[0]): str(row[1]) for row in await conn.fetch(_APPLIED)}


async def schema_status(db: PostgresDatabase) -> SchemaStatus:
    """The applied and the shipped schema versions; `MigrationError` on an edited migration
    or a database newer than the code."""
    migrations = load_migrations(MIGRATIONS_PACKAGE)
    async with db.connection() as conn:
        applied = await _applied(conn)
    verify_applied(applied, migrations)
    return SchemaStatus(current=max(applied, default=0), latest=len(migrations))


async def _apply(
    db: PostgresDatabase, migration: Migration, migrations: tuple[Migration, ...]
) -> bool:
    """Applies `migration` unless another migrator already did; True when this call did."""
    async with db.transaction() as conn:
        await conn.execute(_LOCK)
        await conn.execute(_BOOKKEEPING)
        # Re-read inside the lock: a concurrent migrator may have applied it meanwhile.
        applied = await _applied(conn)
        verify_applied(applied, migrations)
        if migration.version in applied:
            return False
        await conn.execute(migration.sql)
        await conn.execute(
            _RECORD, migration.version, migration.name, migration.checksum, time.time()
        )
    return True


async def migrate(db: PostgresDatabase) -> list[str]:
    """Applies every pending migration; returns the names applied (empty when up to date)."""
    migrations = load_migrations(MIGRATIONS_PACKAGE)
    async with db.connection() as conn:
        applied = await _applied(conn)
    verify_applied(applied, migrations)
    done = []
    for migration in migrations:
        if migration.version in applied:
            continue
        if await _apply(db, migration, migrations):
            done.append(f"{migration.version:04d}_{migration.name}")
    return done
