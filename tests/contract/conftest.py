"""Backends of the contract suites: every suite runs once per name in `BACKENDS`.

`backend_kind` resolves the per-run PostgreSQL database in its synchronous setup (outside the
test's event loop), so a suite's async fixture only has to call `open_postgres()`: a pool on
that database, migrated (once per run; later calls are one query) and emptied, so each test
starts from a fresh, empty store.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.storage.postgres.database import PostgresDatabase
from gateway.storage.postgres.migrate import migrate

BACKENDS = ["sqlite", "postgres"]

# Every data table, children first; the bookkeeping (schema_migrations, meta) is kept.
POSTGRES_TABLES = (
    "gateway.secret_versions", "gateway.secret_heads", "gateway.secret_keks",
    "gateway.webhook_replays",
    "identity.email_tokens", "identity.recovery_codes", "identity.mfa",
    "identity.api_keys", "identity.service_accounts", "identity.operators",
    "identity.invitations", "identity.memberships", "identity.users", "identity.tenants",
    "gateway.sessions", "gateway.policy_rules", "gateway.audit_events",
)  # fmt: skip
# DELETE, not TRUNCATE: on a handful of rows it takes well under a millisecond, where
# TRUNCATE's new files and checkpoint-visible work take ~50 ms per test.
EMPTY_TABLES = "; ".join(
    ["BEGIN", "SET LOCAL synchronous_commit = off"]
    + [f"DELETE FROM {table}" for table in POSTGRES_TABLES]  # noqa: S608 - constants
    + ["COMMIT"]
)


@dataclass(frozen=True)
class BackendKind:
    """Which adapter a test runs against, and for PostgreSQL, the per-run database."""

    name: str
    postgres_url: str | None = None

    async def open_postgres(self) -> PostgresDatabase:
        """A pool on the per-run database, migrated and with every data table emptied."""
        assert self.postgres_url is not None
        db = await PostgresDatabase.open(self.postgres_url, min_size=1, max_size=8)
        try:
            await migrate(db)
            async with db.connection() as conn:
                await conn.execute(EMPTY_TABLES)
        except BaseException:
            await db.close()
            raise
        return db


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> BackendKind:
    if request.param == "postgres":
        return BackendKind("postgres", request.getfixturevalue("postgres_url"))
    return BackendKind(request.param)
