"""Writing audit events into PostgreSQL inside the caller's transaction."""

from __future__ import annotations

import json

from gateway.audit.chain import GENESIS, chain_hash, chain_key
from gateway.audit.events import AuditEvent
from gateway.storage.postgres.database import Connection

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
