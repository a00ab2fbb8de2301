"""Coalesced store reads: concurrent misses on one cache key share a single load.

When a hot cache entry expires, every request that arrives before it is reloaded misses at
once; without coalescing each of them queries the store (a stampede: with 32 connections
on one session, 32 identical reads per key each time its entry expires, on every replica).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """At most one load per key in flight; callers asking for that key meanwhile share it.

    Guarantees:
    - every caller gets the outcome of the load it joined: its value or its exception;
    - a failed load is not remembered: the next caller after it starts a new one;
    - after `forget()` (call it on every invalidation), later callers start a new load
      instead of joining one that began before the invalidation;
    - a caller cancelled while waiting does not cancel the load the others wait on.
    """

    def __init__(self) -> None:
        self._flights: dict[K, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        """How many loads are in flight (and joinable)."""
        return len(self._flights)

    async def run(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """`load()`'s outcome, shared with every caller of the same key while it runs."""
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(load())
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(flight)

    def _landed(self, key: K, flight: asyncio.Future[V]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    def forget(self) -> None:
        """Loads in flight finish for those already waiting, but nobody joins them any more."""
        self._flights.clear()
