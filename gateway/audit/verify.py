"""Verifying the hash chains: every stored event must link to its predecessor and hash to
exactly what is stored.

Guarantees: a modified, removed, inserted or reordered event is reported as the first broken
link of its chain (the modified event itself, or the first event after a gap); a chain is
reported by name with the `seq` and id of that event. What verification cannot see on its
own is a chain cut short at its end, or rewritten from some event onwards with every later
hash recomputed: the head hashes it reports are what to anchor elsewhere to catch those.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.audit.chain import GENESIS, chain_hash, chain_key
from gateway.audit.store import AuditReader, StoredEvent

PAGE = 1000


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """The first event of a chain that does not verify, and why."""

    chain: str
    seq: int
    event_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """One chain's outcome: how many events verified, its head hash, its first broken link."""

    chain: str
    events: int
    head: str
    broken: BrokenLink | None = None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Every chain's outcome; `ok` only when no chain is broken."""

    chains: list[ChainReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.broken is None for c in self.chains)

    @property
    def events(self) -> int:
        return sum(c.events for c in self.chains)


def link_problem(prev: str, event: StoredEvent) -> str | None:
    """Why `event` does not follow a chain whose last hash is `prev` (None: it does)."""
    if event.prev_hash != prev:
        return "prev_hash does not match the previous event (an event was removed or inserted)"
    if chain_hash(prev, event.record) != event.hash:
        return "hash does not match the event's content (the event was modified)"
    if chain_key(event.record.get("tenant_id")) != event.chain:
        return "the event is stored in another tenant's chain"
    for name, value in event.columns.items():
        if event.record.get(name) != value:
            return f"the stored `{name}` column differs from the hashed event"
    return None


async def verify_chain(reader: AuditReader, chain: str) -> ChainReport:
    """Walks one chain from its genesis; stops at its first broken link."""
    prev, count, after = GENESIS, 0, 0
    while page := await reader.chain_page(chain, after, PAGE):
        for event in page:
            problem = link_problem(prev, event)
            if problem is not None:
                link = BrokenLink(chain, event.seq, str(event.record.get("id", "?")), problem)
                return ChainReport(chain, count, prev, link)
            prev, count, after = event.hash, count + 1, event.seq
    return ChainReport(chain, count, prev)


async def verify_all(reader: AuditReader) -> VerifyReport:
    """Verifies every chain (each tenant's and the platform chain)."""
    return VerifyReport([await verify_chain(reader, chain) for chain in await reader.chains()])
