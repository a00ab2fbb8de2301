"""The SQLite `TenantRuleStore`: the `policy_rules` table of the embedded database (0005).

Guarantees: the table has no domain column, so every rule read back has `dom == tenant_id`;
`replace_rules` deletes and inserts the tenant's rows and appends the audit event in one
write-locked transaction (all or nothing); backend failures surface as `StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence

from gateway.audit.events import AuditEvent
from gateway.policy.rules import Rule
from gateway.storage.ports import StoreUnavailable
from gateway.storage.sqlite.audit import append_event
from gateway.storage.sqlite.database import SqliteDatabase

__all__ = ["SqliteTenantRuleStore"]

_SELECT = "SELECT sub, obj, act, eft FROM policy_rules WHERE tenant_id = ? ORDER BY position"
_INSERT = (
    "INSERT INTO policy_rules (tenant_id, position, sub, obj, act, eft) VALUES (?, ?, ?, ?, ?, ?)"
)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Maps SQLite's exceptions onto the port's."""
    try:
        yield
    except (sqlite3.Error, OSError, ValueError) as exc:  # ValueError: connection closed
        raise StoreUnavailable(f"policy store: {exc}") from exc


class SqliteTenantRuleStore:
    """Tenant policy rules in the embedded database."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def changes_since(self, cursor: int | None) -> tuple[list[str], int]:
        """Tenants with a `policy.update` audit event after `cursor` (the audit sequence)."""
        with _translated():
            if cursor is None:
                row = await self._db.fetchone("SELECT COALESCE(MAX(seq), 0) FROM audit_events")
                return [], int(row[0]) if row else 0
            rows = await self._db.fetchall(
                "SELECT seq, tenant_id, action FROM audit_events WHERE seq > ? ORDER BY seq",
                (cursor,),
            )
        tenants = sorted({r[1] for r in rows if r[2] == "policy.update" and r[1]})
        return tenants, max((int(r[0]) for r in rows), default=cursor)

    async def list_rules(self, tenant_id: str) -> list[Rule]:
        """The tenant's rules in write order, each with `dom == tenant_id`."""
        with _translated():
            rows = await self._db.fetchall(_SELECT, (tenant_id,))
        return [Rule(row[0], tenant_id, row[1], row[2], row[3]) for row in rows]

    async def replace_rules(
        self, tenant_id: str, rules: Sequence[Rule], audit_event: AuditEvent
    ) -> None:
        """Makes `rules` (deduplicated, `dom` replaced by the tenant) the tenant's set."""
        # SECURITY: the caller's `dom` is ignored; a row belongs to `tenant_id` and nothing else.
        rows = dict.fromkeys((r.sub, r.obj, r.act, r.eft) for r in rules)
        with _translated():
            async with self._db.transaction() as conn:
                await append_event(conn, audit_event)
                await conn.execute("DELETE FROM policy_rules WHERE tenant_id = ?", (tenant_id,))
                await conn.executemany(
                    _INSERT, [(tenant_id, i, *row) for i, row in enumerate(rows)]
                )
