"""Reading the audit stream: the port every backend's reader implements, and its queries.

Readers only read: appending stays with `append_event`, inside the transaction of the change
an event records. Every event has a global sequence number `seq` (increasing in append order
on SQLite; on PostgreSQL a later `seq` can commit a moment before an earlier one of another
chain, which the stream tolerates, see `gateway.audit.stream`). `seq` is the paging cursor of
the admin API and the `id` of Server-Sent Events.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

MAX_LIMIT = 1000
COLUMNS = "seq, chain, record, prev_hash, hash, id, tenant_id, action, outcome, ts"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One stored event: `record` is the event exactly as it was hashed; `columns` are the
    indexed copies of some of its fields (`id`, `tenant_id`, `action`, `outcome`, `ts`) that
    queries filter on, which `verify` checks against the record."""

    seq: int
    chain: str
    record: dict[str, Any]
    prev_hash: str
    hash: str
    columns: dict[str, Any]

    def view(self) -> dict[str, Any]:
        """The contract's event shape plus `seq` (the paging and resume cursor)."""
        return {**self.record, "seq": self.seq, "prev_hash": self.prev_hash, "hash": self.hash}


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which events to read. `tenant_id=None` means every chain (operators only).

    `action` matches exactly, or as a prefix when it ends in `*` (`session.*`). With a cursor
    (`after_seq` or `since`) the result is the first `limit` events from there; without one,
    the newest `limit` events (before `before_seq`, if set). Results are always oldest first.
    """

    tenant_id: str | None = None
    action: str | None = None
    since: float | None = None
    after_seq: int | None = None
    before_seq: int | None = None
    limit: int = 100

    @property
    def forward(self) -> bool:
        return self.after_seq is not None or self.since is not None


class AuditReader(Protocol):
    """Read access to the stored audit events of every chain."""

    async def find(self, query: AuditQuery) -> list[StoredEvent]:
        """The matching events, oldest first (newest last); see `AuditQuery`."""
        ...

    async def chains(self) -> list[str]:
        """The name of every chain that holds at least one event."""
        ...

    async def chain_page(self, chain: str, after_seq: int, limit: int) -> list[StoredEvent]:
        """Up to `limit` events of one chain after `after_seq`, in chain order."""
        ...

    async def last_seq(self) -> int:
        """The highest `seq` stored (0 when there is none)."""
        ...


Placeholder = Callable[[int], str]


def qmark(_: int) -> str:
    """SQLite's placeholder."""
    return "?"


def dollar(index: int) -> str:
    """PostgreSQL's placeholder (`$1`, `$2` …)."""
    return f"${index}"


def where_clause(query: AuditQuery, mark: Placeholder) -> tuple[str, list[Any]]:
    """The WHERE clause (possibly empty) and its parameters for `query`."""
    clauses: list[str] = []
    params: list[Any] = []

    def add(sql: str, value: Any) -> None:
        params.append(value)
        clauses.append(sql.format(mark(len(params))))

    if query.tenant_id is not None:
        # SECURITY: the tenant filter is part of the query: no other tenant's row is read.
        add("tenant_id = {}", query.tenant_id)
    if query.action is not None and query.action.endswith("*"):
        prefix = query.action[:-1]
        # A prefix comparison, not LIKE: `_` and `%` in names match only themselves.
        add(f"substr(action, 1, {len(prefix)}) = {{}}", prefix)
    elif query.action is not None:
        add("action = {}", query.action)
    if query.since is not None:
        add("ts >= {}", query.since)
    if query.after_seq is not None:
        add("seq > {}", query.after_seq)
    if query.before_seq is not None:
        add("seq < {}", query.before_seq)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def find_sql(table: str, query: AuditQuery, mark: Placeholder) -> tuple[str, list[Any]]:
    """The SELECT of `find`: ascending from a cursor, else descending (the caller reverses)."""
    where, params = where_clause(query, mark)
    order = "ASC" if query.forward else "DESC"
    limit = max(1, min(query.limit, MAX_LIMIT))
    # Only constants and placeholders are interpolated: values travel as parameters.
    sql = f"SELECT {COLUMNS} FROM {table}{where} ORDER BY seq {order} LIMIT {limit}"  # noqa: S608
    return sql, params


def to_event(row: Any) -> StoredEvent:
    """A stored event from a row of `COLUMNS` (SQLite or asyncpg)."""
    raw = row[2]
    record = json.loads(raw) if isinstance(raw, str | bytes) else dict(raw)
    columns = {"id": row[5], "tenant_id": row[6], "action": row[7], "outcome": row[8]}
    columns["ts"] = float(row[9])
    return StoredEvent(int(row[0]), str(row[1]), record, str(row[3]), str(row[4]), columns)


def in_order(query: AuditQuery, events: list[StoredEvent]) -> list[StoredEvent]:
    """Results oldest first, whichever way the query read them."""
    return events if query.forward else events[::-1]
