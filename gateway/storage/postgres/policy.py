"""The PostgreSQL `TenantRuleStore`: the `gateway.policy_rules` table (migration 0005).

Guarantees: the table has no domain column, so every rule read back has `dom == tenant_id`;
`replace_rules` appends the audit event, deletes and inserts the tenant's rows in one
transaction (all or nothing), and replacements of one tenant's rules are serialized across
replicas by an advisory lock (the last writer's set wins, as on SQLite); backend failures
surface as `StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import asyncpg

from gateway.audit.events import AuditEvent
from gateway.policy.rules import Rule
from gateway.storage.ports import StoreUnavailable
from gateway.storage.postgres.audit import append_event
from gateway.storage.postgres.database import PostgresDatabase

__all__ = ["PostgresTenantRuleStore"]

_SELECT = (
    "SELECT sub, obj, act, eft FROM gateway.policy_rules WHERE tenant_id = $1 ORDER BY position"
)
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('policy:' || $1))"
_DELETE = "DELETE FROM gateway.policy_rules WHERE tenant_id = $1"
# One round trip for the whole set; WITH ORDINALITY keeps the caller's order as `position`.
_INSERT = (
    "INSERT INTO gateway.policy_rules (tenant_id, position, sub, obj, act, eft) "
    "SELECT $1, r.n - 1, r.sub, r.obj, r.act, r.eft "
    "FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) "
    "WITH ORDINALITY AS r(sub, obj, act, eft, n)"
)


@contextlib.asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    """Maps asyncpg's exceptions onto the port's (outages arrive already mapped)."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        raise StoreUnavailable(f"policy store: {type(exc).__name__}: {exc}") from exc


class PostgresTenantRuleStore:
    """Tenant policy rules in PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def changes_since(self, cursor: int | None) -> tuple[list[str], int]:
        """Tenants with a `policy.update` audit event after `cursor` (the audit sequence)."""
        async with _translated():
            if cursor is None:
                top = await self._db.fetchval(
                    "SELECT COALESCE(MAX(seq), 0) FROM gateway.audit_events"
                )
                return [], int(top)
            rows = await self._db.fetch(
                "SELECT seq, tenant_id, action FROM gateway.audit_events WHERE seq > $1 "
                "ORDER BY seq",
                cursor,
            )
        tenants = sorted({r[1] for r in rows if r[2] == "policy.update" and r[1]})
        return tenants, max((int(r[0]) for r in rows), default=cursor)

    async def list_rules(self, tenant_id: str) -> list[Rule]:
        """The tenant's rules in write order, each with `dom == tenant_id`."""
        async with _translated():
            rows = await self._db.fetch(_SELECT, tenant_id)
        return [Rule(row[0], tenant_id, row[1], row[2], row[3]) for row in rows]

    async def replace_rules(
        self, tenant_id: str, rules: Sequence[Rule], audit_event: AuditEvent
    ) -> None:
        """Makes `rules` (deduplicated, `dom` replaced by the tenant) the tenant's set."""
        # SECURITY: the caller's `dom` is ignored; a row belongs to `tenant_id` and nothing else.
        rows = list(dict.fromkeys((r.sub, r.obj, r.act, r.eft) for r in rules))
        columns = [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * 4
        async with _translated(), self._db.transaction() as conn:
            await conn.execute(_LOCK, tenant_id)
            await append_event(conn, audit_event)
            await conn.execute(_DELETE, tenant_id)
            await conn.execute(_INSERT, tenant_id, *columns)
