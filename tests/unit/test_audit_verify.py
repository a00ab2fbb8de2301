"""Chain verification over an in-memory reader: each kind of tampering names its first event."""

from __future__ import annotations

import dataclasses

from gateway.audit.chain import GENESIS, chain_hash, chain_key
from gateway.audit.events import Actor, AuditEvent
from gateway.audit.store import AuditQuery, StoredEvent
from gateway.audit.verify import verify_all


class MemoryReader:
    """An `AuditReader` over a list, with `append` computing links as the adapters do."""

    def __init__(self) -> None:
        self.rows: list[StoredEvent] = []

    def append(self, event: AuditEvent) -> StoredEvent:
        chain = chain_key(event.tenant_id)
        prev = next((r.hash for r in reversed(self.rows) if r.chain == chain), GENESIS)
        record = event.as_record()
        columns = {k: record[k] for k in ("id", "tenant_id", "action", "outcome", "ts")}
        seq = (self.rows[-1].seq if self.rows else 0) + 1
        row = StoredEvent(seq, chain, record, prev, chain_hash(prev, record), columns)
        self.rows.append(row)
        return row

    async def find(self, query: AuditQuery) -> list[StoredEvent]:
        rows = [r for r in self.rows if query.tenant_id in (None, r.record["tenant_id"])]
        rows = [r for r in rows if r.seq > (query.after_seq or 0)]
        return rows[: query.limit] if query.forward else rows[-query.limit :]

    async def chains(self) -> list[str]:
        return sorted({r.chain for r in self.rows})

    async def chain_page(self, chain: str, after_seq: int, limit: int) -> list[StoredEvent]:
        return [r for r in self.rows if r.chain == chain and r.seq > after_seq][:limit]

    async def last_seq(self) -> int:
        return self.rows[-1].seq if self.rows else 0


def filled() -> MemoryReader:
    reader = MemoryReader()
    for i in range(4):
        reader.append(AuditEvent(action="auth.signin", actor=Actor("user", f"u{i}"), tenant_id="t"))
    reader.append(AuditEvent(action="key.rotate", actor=Actor("system")))
    return reader


async def test_an_untouched_store_verifies() -> None:
    report = await verify_all(filled())
    assert report.ok and report.events == 5
    assert {c.chain for c in report.chains} == {"t", "platform"}


async def test_a_modified_event_is_named() -> None:
    reader = filled()
    row = reader.rows[1]
    reader.rows[1] = dataclasses.replace(row, record={**row.record, "outcome": "failure"})
    report = await verify_all(reader)
    broken = next(c.broken for c in report.chains if c.broken)
    assert (broken.chain, broken.seq, broken.event_id) == ("t", 2, row.record["id"])
    assert "modified" in broken.reason


async def test_a_removed_event_breaks_the_next_link() -> None:
    reader = filled()
    del reader.rows[1]
    broken = next(c.broken for c in (await verify_all(reader)).chains if c.broken)
    assert broken.seq == 3 and "removed" in broken.reason


async def test_a_rehashed_event_still_breaks_its_successor() -> None:
    reader = filled()
    row = reader.rows[0]
    record = {**row.record, "target": "someone-else"}
    reader.rows[0] = dataclasses.replace(row, record=record, hash=chain_hash(GENESIS, record))
    broken = next(c.broken for c in (await verify_all(reader)).chains if c.broken)
    assert broken.seq == 2


async def test_a_moved_event_and_a_changed_column_are_caught() -> None:
    reader = filled()
    reader.rows[4] = dataclasses.replace(reader.rows[4], chain="t")
    assert not (await verify_all(reader)).ok
    reader = filled()
    row = reader.rows[2]
    reader.rows[2] = dataclasses.replace(row, columns={**row.columns, "tenant_id": "other"})
    broken = next(c.broken for c in (await verify_all(reader)).chains if c.broken)
    assert broken.seq == 3 and "tenant_id" in broken.reason
