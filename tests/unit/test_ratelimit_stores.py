"""The in-process store's bounds and clock, and the fallback store's switching rules."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.ratelimit.factory import build_store, is_degraded
from gateway.ratelimit.fallback import FallbackRateLimitStore
from gateway.ratelimit.gcra import RateResult
from gateway.ratelimit.penalty import PenaltyPolicy
from gateway.ratelimit.stores import BoundedTable, MemoryRateLimitStore, RateCheck


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_memory_refills_on_the_injected_clock() -> None:
    clock = Clock()
    store = MemoryRateLimitStore(clock)
    assert [(await store.check("k", 2.0, 2)).allowed for _ in range(3)] == [True, True, False]
    clock.now += 0.5
    assert (await store.check("k", 2.0, 2)).allowed
    assert not (await store.check("k", 2.0, 2)).allowed


async def test_memory_store_is_bounded_and_drops_the_oldest() -> None:
    clock = Clock()
    store = MemoryRateLimitStore(clock, max_keys=3)
    for key in "abcd":
        await store.check(key, 0.001, 1)
    assert len(store) == 3
    assert (await store.check("a", 0.001, 1)).allowed  # "a" was dropped: forgotten
    assert not (await store.check("d", 0.001, 1)).allowed  # recent ones are kept


async def test_memory_store_sweeps_expired_before_dropping_live_ones() -> None:
    clock = Clock()
    store = MemoryRateLimitStore(clock, max_keys=3)
    await store.check("live", 0.001, 1)
    await store.check("x", 1.0, 1)
    await store.check("y", 1.0, 1)
    clock.now += 2.0  # x and y are idle again
    await store.check("z", 1.0, 1)
    await store.check("w", 1.0, 1)
    assert not (await store.check("live", 0.001, 1)).allowed


def test_bounded_table_rejects_a_zero_bound_and_hides_expired() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        BoundedTable[int](0)
    table = BoundedTable[int](2)
    table.put("a", 1, expires=10, now=0)
    assert table.get("a", 9) == 1
    assert table.get("a", 10) is None


async def test_memory_failures_decay_and_are_bounded() -> None:
    clock = Clock()
    store = MemoryRateLimitStore(clock, max_keys=2)
    policy = PenaltyPolicy()
    for _ in range(7):
        await store.add_failure("acct", policy)
    assert await store.penalty_wait("acct", policy) == 4.0
    clock.now += 3600
    assert await store.penalty_wait("acct", policy) == 0
    assert await store.add_failure("acct", policy) == 0  # counting starts over


class BrokenStore(MemoryRateLimitStore):
    """A primary that fails (or hangs) while `down`."""

    def __init__(self) -> None:
        super().__init__(Clock())
        self.down = False
        self.hang = False
        self.calls = 0

    async def check_many(self, checks: Sequence[RateCheck]) -> list[RateResult]:
        self.calls += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.down:
            raise RedisConnectionError("down")
        return await super().check_many(checks)


async def test_fallback_retries_the_primary_at_most_once_per_second() -> None:
    clock = Clock()
    primary = BrokenStore()
    store = FallbackRateLimitStore(primary, MemoryRateLimitStore(clock), clock=clock)
    primary.down = True
    for _ in range(5):
        await store.check("k", 1.0, 100)
    assert primary.calls == 1
    assert store.degraded
    assert is_degraded(store)
    clock.now += 1.0
    await store.check("k", 1.0, 100)
    assert primary.calls == 2
    primary.down = False
    clock.now += 1.0
    await store.check("k", 1.0, 100)
    assert not store.degraded


async def test_a_hanging_primary_times_out_to_the_fallback() -> None:
    clock = Clock()
    primary = BrokenStore()
    primary.hang = True
    store = FallbackRateLimitStore(primary, MemoryRateLimitStore(clock), clock=clock, timeout=0.01)
    assert (await store.check("k", 1.0, 1)).allowed
    assert not (await store.check("k", 1.0, 1)).allowed
    assert store.degraded


async def test_clear_failures_clears_both_stores() -> None:
    clock = Clock()
    primary, fallback = MemoryRateLimitStore(clock), MemoryRateLimitStore(clock)
    store = FallbackRateLimitStore(primary, fallback, clock=clock)
    policy = PenaltyPolicy(threshold=1)
    await fallback.add_failure("a", policy)
    await store.add_failure("a", policy)
    await store.clear_failures("a")
    assert await primary.penalty_wait("a", policy) == 0
    assert await fallback.penalty_wait("a", policy) == 0


def test_build_store_without_redis_is_in_process() -> None:
    store = build_store(None)
    assert isinstance(store, MemoryRateLimitStore)
    assert not is_degraded(store)
