"""Writing audit events into SQLite inside the caller's transaction, and reading them."""

from __future__ import annotations

import json

import aiosqlite

from gateway.audit.chain import GENESIS, chain_hash, chain_key
from gateway.audit.events import AuditEvent
from gateway.audit.store import (
    COLUMNS,
    AuditQuery,
    StoredEvent,
    find_sql,
    in_order,
    qmark,
    to_event,
)
from gateway.storage.sqlite.database import SqliteDatabase


async def append_event(conn: aiosqlite.Connection, event: AuditEvent) -> str:
    """Appends `event` to its chain within the open transaction on `conn`; returns its hash.

    Must be called inside `SqliteDatabase.transaction()`: the write lock makes reading the
    chain's last hash and appending the next link atomic.
    """
    chain = chain_key(event.tenant_id)
    async with conn.execute(
        "SELECT hash FROM audit_events WHERE chain = ? ORDER BY seq DESC LIMIT 1", (chain,)
    ) as cur:
        row = await cur.fetchone()
    prev = str(row[0]) if row else GENESIS
    record = event.as_record()
    digest = chain_hash(prev, record)
    await conn.execute(
        "INSERT INTO audit_events (id, chain, ts, tenant_id, action, outcome, record, "
        "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event.id,
            chain,
            event.ts,
            event.tenant_id,
            event.action,
            event.outcome,
            json.dumps(record, separators=(",", ":")),
            prev,
            digest,
        ),
    )
    return digest


class SqliteAuditReader:
    """`AuditReader` over the embedded database (its reader connection: never blocks writes)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def find(self, query: AuditQuery) -> list[StoredEvent]:
        sql, params = find_sql("audit_events", query, qmark)
        rows = await self._db.fetchall(sql, tuple(params))
        return in_order(query, [to_event(row) for row in rows])

    async def chains(self) -> list[str]:
        rows = await self._db.fetchall("SELECT DISTINCT chain FROM audit_events ORDER BY chain")
        return [str(row[0]) for row in rows]

    async def chain_page(self, chain: str, after_seq: int, limit: int) -> list[StoredEvent]:
        rows = await self._db.fetchall(
            f"SELECT {COLUMNS} FROM audit_events WHERE chain = ? AND seq > ? "  # noqa: S608
            "ORDER BY seq LIMIT ?",
            (chain, after_seq, limit),
        )
        return [to_event(row) for row in rows]

    async def last_seq(self) -> int:
        row = await self._db.fetchone("SELECT MAX(seq) FROM audit_events")
        return int(row[0]) if row is not None and row[0] is not None else 0
