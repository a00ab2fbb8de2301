"""PostgreSQL migrations: idempotent, safe under concurrent migrators, strict about versions.

One private server (never the shared one) serves the module; each test gets a new, empty
database on it, so it may break its bookkeeping freely.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from gateway.storage import migrations as shipped
from gateway.storage.migrations import Migration, MigrationError
from gateway.storage.postgres import migrate as migrate_module
from gateway.storage.postgres.database import PostgresDatabase
from gateway.storage.postgres.migrate import MIGRATIONS_PACKAGE, migrate, schema_status
from tests.support import services

ALL = [f"{m.version:04d}_{m.name}" for m in shipped.load_migrations(MIGRATIONS_PACKAGE)]
LATEST = len(ALL)


@pytest.fixture(scope="module")
def server() -> Iterator[services.PostgresServer]:
    """A private PostgreSQL server for this module (started once: ~0.7 s)."""
    made: services.PostgresServer | None = None
    try:
        made = services.PostgresServer()
        made.start()
    except services.ServiceStartError as exc:
        if made is not None:
            made.close()
        services.service_unavailable(f"cannot start a private PostgreSQL server: {exc}")
    yield made
    made.close()


@pytest.fixture
async def url(server: services.PostgresServer) -> AsyncIterator[str]:
    """The URL of a new, empty database on the module's private server."""
    name = f"mig_{secrets.token_hex(4)}"
    await services.create_database(server.url(), name)
    yield server.url(name)
    await services.drop_database(server.url(), name)


@pytest.fixture
async def db(url: str) -> AsyncIterator[PostgresDatabase]:
    database = await PostgresDatabase.open(url, max_size=2)
    yield database
    await database.close()


async def test_an_empty_database_is_outdated_and_status_writes_nothing(
    db: PostgresDatabase,
) -> None:
    status = await schema_status(db)
    assert (status.current, status.latest, status.outdated) == (0, LATEST, True)
    assert await db.fetchval("SELECT to_regnamespace('gateway')") is None


async def test_migrating_twice_is_harmless(db: PostgresDatabase) -> None:
    assert await migrate(db) == ALL
    assert await migrate(db) == []
    status = await schema_status(db)
    assert (status.current, status.outdated, status.too_new) == (LATEST, False, False)
    rows = await db.fetch("SELECT version FROM gateway.schema_migrations ORDER BY version")
    assert [row[0] for row in rows] == list(range(1, LATEST + 1))


async def test_concurrent_migrators_apply_each_migration_exactly_once(url: str) -> None:
    pools = [await PostgresDatabase.open(url, max_size=1) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(pool) for pool in pools))
        assert sorted(name for applied in results for name in applied) == ALL
        count = await pools[0].fetchval("SELECT count(*) FROM gateway.schema_migrations")
        assert count == LATEST
    finally:
        for pool in pools:
            await pool.close()


async def test_identity_lives_in_its_own_schema(db: PostgresDatabase) -> None:
    await migrate(db)
    rows = await db.fetch(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('identity', 'gateway')"
    )
    by_schema: dict[str, set[str]] = {}
    for row in rows:
        by_schema.setdefault(row[0], set()).add(row[1])
    assert by_schema["identity"] == {
        "tenants", "users", "memberships", "invitations", "operators", "service_accounts",
        "api_keys", "mfa", "recovery_codes", "email_tokens",
    }  # fmt: skip
    assert {"sessions", "policy_rules", "audit_events", "schema_migrations"} <= by_schema["gateway"]


async def test_a_partly_migrated_database_is_outdated_then_completed(
    db: PostgresDatabase,
) -> None:
    await migrate(db)
    await db.fetchval("DELETE FROM gateway.schema_migrations WHERE version > 3")
    status = await schema_status(db)
    assert (status.current, status.outdated) == (3, True)
    assert await migrate(db) == ALL[3:]
    assert not (await schema_status(db)).outdated


async def test_an_edited_migration_is_refused(db: PostgresDatabase) -> None:
    await migrate(db)
    await db.fetchval("UPDATE gateway.schema_migrations SET checksum = 'x' WHERE version = 2")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await schema_status(db)
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(db)


async def test_a_database_newer_than_the_code_is_refused(db: PostgresDatabase) -> None:
    await migrate(db)
    await db.fetchval(
        "INSERT INTO gateway.schema_migrations VALUES ($1, 'future', 'c', 0)", LATEST + 1
    )
    with pytest.raises(MigrationError, match="newer than this gateway"):
        await schema_status(db)
    with pytest.raises(MigrationError, match="newer than this gateway"):
        await migrate(db)


async def test_a_failing_migration_leaves_no_trace(
    db: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = Migration(LATEST + 1, "broken", "CREATE TABLE gateway.half (a int);\nSELECT 1/0;")
    real = shipped.load_migrations(MIGRATIONS_PACKAGE)
    monkeypatch.setattr(migrate_module, "load_migrations", lambda _package: (*real, broken))
    with pytest.raises(asyncpg.DivisionByZeroError):
        await migrate(db)
    assert await db.fetchval("SELECT to_regclass('gateway.half')") is None
    assert await db.fetchval("SELECT max(version) FROM gateway.schema_migrations") == LATEST
