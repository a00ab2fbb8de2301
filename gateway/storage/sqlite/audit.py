"""Writing audit events into SQLite inside the caller's transaction."""

from __future__ import annotations

import json

import aiosqlite

from gateway.audit.chain import GENESIS, chain_hash, chain_key
from gateway.audit.events import AuditEvent


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
