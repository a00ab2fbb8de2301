"""Writing audit events into PostgreSQL inside the caller's transaction, and reading them."""

from __future__ import annotations

import json

from gateway.audit.chain import GENESIS, chain_hash, chain_key
from gateway.audit.events import AuditEvent
from gateway.audit.store import (
    COLUMNS,
    AuditQuery,
    StoredEvent,
    dollar,
    find_sql,
    in_order,
    to_event,
)
from gateway.storage.postgres.database import Connection, PostgresDatabase

_LOCK = "SELECT pg_advisory_xact_lock(hashtext('audit:' || $1))"
_LAST = "SELECT hash FROM gateway.audit_events WHERE chain = $1 ORDER BY seq DESC LIMIT 1"
_INSERT = (
    "INSERT INTO gateway.audit_events (id, chain, ts, tenant_id, action, outcome, record, "
    "prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)


async def append_event(conn: Connection, event: AuditEvent) -> str:
    """Appends `event` to its chain within the open transaction on `conn`; returns its hash.

    Appends to one chain are serialized across every replica by a transaction-scoped
    advisory lock taken before the chain's last hash is read, so no two events ever link to
    the same predecessor (the `(chain, prev_hash)` unique constraint backs this up). The lock
    is released when the caller's transaction ends, so the event and the change it records
    commit together or not at all. An event that cannot be encoded raises before anything
    is written.
    """
    chain = chain_key(event.tenant_id)
    record = event.as_record()
    encoded = json.dumps(record, separators=(",", ":"))
    await conn.execute(_LOCK, chain)
    # A new statement, so a new READ COMMITTED snapshot: it sees the previous lock holder's row.
    prev = await conn.fetchval(_LAST, chain) or GENESIS
    digest = chain_hash(prev, record)
    await conn.execute(
        _INSERT,
        event.id,
        chain,
        event.ts,
        event.tenant_id,
        event.action,
        event.outcome,
        encoded,
        prev,
        digest,
    )
    return digest


class PostgresAuditReader:
    """`AuditReader` over `gateway.audit_events` (plain reads outside any transaction)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def find(self, query: AuditQuery) -> list[StoredEvent]:
        sql, params = find_sql("gateway.audit_events", query, dollar)
        rows = await self._db.fetch(sql, *params)
        return in_order(query, [to_event(row) for row in rows])

    async def chains(self) -> list[str]:
        rows = await self._db.fetch("SELECT DISTINCT chain FROM gateway.audit_events ORDER BY 1")
        return [str(row[0]) for row in rows]

    async def chain_page(self, chain: str, after_seq: int, limit: int) -> list[StoredEvent]:
        rows = await self._db.fetch(
            f"SELECT {COLUMNS} FROM gateway.audit_events WHERE chain = $1 AND seq > $2 "  # noqa: S608
            "ORDER BY seq LIMIT $3",
            chain,
            after_seq,
            limit,
        )
        return [to_event(row) for row in rows]

    async def last_seq(self) -> int:
        value = await self._db.fetchval("SELECT max(seq) FROM gateway.audit_events")
        return int(value) if value is not None else 0
