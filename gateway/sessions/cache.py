"""The local session cache on the hot path: bounded in size (LRU) and in age.

Guarantees: at most `max_entries` sessions are held, the least recently used evicted first;
an entry older than `ttl` seconds (counted from when it was read from the store, by the
injected clock) is never returned, so a change made where the bus cannot reach (another
process on the same SQLite file, a lost notice) is seen within `ttl`; a store read that
raced with an invalidation is not cached (see `generation`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.observability.metrics import SESSION_CACHE
from gateway.sessions.models import (
    SESSION_REVOKED,
    SESSIONS_CHANGED,
    TENANT_SESSIONS_REVOKED,
    USER_SESSIONS_REVOKED,
    SessionRecord,
)

Clock = Callable[[], float]
Predicate = Callable[[SessionRecord], bool]


@dataclass(slots=True)
class CacheEntry:
    """A cached session: the record as this process sees it, and what the store holds.

    `record.last_seen_at` advances in memory on every use; `stored_last_seen` is the value
    the store last confirmed, so the service knows when a touch is due.
    """

    record: SessionRecord
    loaded_at: float
    stored_last_seen: float


class SessionCache:
    """LRU map of token hash -> `CacheEntry`, with an age bound and predicate invalidation."""

    def __init__(self, max_entries: int = 10_000, ttl: float = 1.0, clock: Clock = time.time):
        if max_entries < 1 or ttl < 0:
            raise ValueError("max_entries must be >= 1 and ttl >= 0")
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl
        self._clock = clock
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def ttl(self) -> float:
        """The current age bound; lowered while the change bus is disconnected."""
        return self._ttl

    @ttl.setter
    def ttl(self, value: float) -> None:
        self._ttl = max(0.0, value)

    def get(self, token_hash: str) -> CacheEntry | None:
        """The fresh entry for `token_hash` (marked most recently used), else None."""
        entry = self._entries.get(token_hash)
        if entry is None:
            SESSION_CACHE.miss()
            return None
        if self._clock() - entry.loaded_at >= self._ttl:
            del self._entries[token_hash]
            SESSION_CACHE.miss()
            return None
        SESSION_CACHE.hit()
        self._entries.move_to_end(token_hash)
        return entry

    def put(self, token_hash: str, entry: CacheEntry, generation: int | None = None) -> bool:
        """Stores `entry` unless an invalidation happened since `generation` was read."""
        if generation is not None and generation != self.generation:
            return False
        self._entries[token_hash] = entry
        self._entries.move_to_end(token_hash)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return True

    def drop(self, token_hash: str) -> None:
        """Forgets one entry (a session found invalid); other in-flight loads stay valid."""
        self._entries.pop(token_hash, None)

    def drop_where(self, predicate: Callable[[SessionRecord], bool]) -> int:
        """Forgets every entry whose record matches; invalidates in-flight loads."""
        self.generation += 1
        doomed = [key for key, e in self._entries.items() if predicate(e.record)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    def clear(self) -> None:
        """Forgets everything (e.g. when the bus reconnects after missing notices)."""
        self.generation += 1
        self._entries.clear()


def by_ids(ids: list[str]) -> Predicate:
    """Matches the sessions with these public ids."""
    wanted = frozenset(ids)
    return lambda r: r.id in wanted


def invalidation(topic: str, payload: Mapping[str, Any]) -> Predicate | None:
    """Which cached sessions a bus notice invalidates (None: not about sessions).

    A session notice with a malformed payload invalidates everything, never nothing.
    """
    if topic in (SESSION_REVOKED, SESSIONS_CHANGED):
        ids = payload.get("ids")
        if isinstance(ids, list):
            return by_ids([str(i) for i in ids])
    elif topic == USER_SESSIONS_REVOKED:
        user_id = payload.get("user_id")
        if isinstance(user_id, str):
            return lambda r: r.user_id == user_id
    elif topic == TENANT_SESSIONS_REVOKED:
        tenant_id = payload.get("tenant_id")
        if isinstance(tenant_id, str):
            return lambda r: r.tenant_id == tenant_id
    else:
        return None
    return lambda r: True
