"""Conformance of the `RateLimitStore` port over the in-process and Redis adapters.

Redis runs on its own clock (`TIME`), so the shared tests use rates slow enough (one
request per 1000 s) that the microseconds between calls never change an answer. Keys live
under the run's `redis_prefix` only.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway.ratelimit.fallback import FallbackRateLimitStore
from gateway.ratelimit.penalty import PenaltyPolicy
from gateway.ratelimit.redis_store import RedisRateLimitStore
from gateway.ratelimit.stores import MemoryRateLimitStore, RateCheck, RateLimitStore
from tests.support.services import ServerHandle

SLOW = 0.001  # one request per 1000 s
POLICY = PenaltyPolicy()


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def client(url: str) -> aioredis.Redis:
    return aioredis.from_url(
        url, retry=Retry(NoBackoff(), 0), socket_timeout=2, socket_connect_timeout=2
    )


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    made = client(redis_url)
    try:
        yield made
    finally:
        await made.aclose()


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return f"{redis_prefix}{secrets.token_hex(4)}:"


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> RateLimitStore:
    if request.param == "memory":
        return MemoryRateLimitStore(Clock())
    redis_client: aioredis.Redis = request.getfixturevalue("redis")
    return RedisRateLimitStore(redis_client, request.getfixturevalue("prefix"))


async def test_burst_then_limited(store: RateLimitStore) -> None:
    results = [await store.check("k", SLOW, 5) for _ in range(6)]
    assert [r.allowed for r in results] == [True] * 5 + [False]
    assert [r.remaining for r in results] == [4, 3, 2, 1, 0, 0]
    assert {r.limit for r in results} == {5}
    assert results[-1].retry_after == pytest.approx(1000, abs=1)
    assert results[-1].reset_after == pytest.approx(5000, abs=1)
    assert results[0].reset_after == pytest.approx(1000, abs=1)


async def test_keys_are_independent(store: RateLimitStore) -> None:
    assert (await store.check("a", SLOW, 1)).allowed
    assert not (await store.check("a", SLOW, 1)).allowed
    assert (await store.check("b", SLOW, 1)).allowed


async def test_check_many_is_all_or_nothing(store: RateLimitStore) -> None:
    assert (await store.check("tight", SLOW, 1)).allowed
    both = [RateCheck("loose", SLOW, 3), RateCheck("tight", SLOW, 1)]
    results = await store.check_many(both)
    assert [r.allowed for r in results] == [True, False]
    assert (await store.check("loose", SLOW, 3)).remaining == 2  # not charged by the refusal
    assert await store.check_many([]) == []


async def test_cost_and_peek(store: RateLimitStore) -> None:
    assert (await store.check("c", SLOW, 10, cost=4)).remaining == 6
    assert (await store.check("c", SLOW, 10, cost=0)).remaining == 6


async def test_failure_penalty(store: RateLimitStore) -> None:
    waits = [await store.add_failure("acct", POLICY) for _ in range(6)]
    assert waits[:4] == [0, 0, 0, 0]
    assert waits[4] == pytest.approx(1, abs=0.05)
    assert waits[5] == pytest.approx(2, abs=0.05)
    assert await store.penalty_wait("acct", POLICY) == pytest.approx(2, abs=0.05)
    assert await store.penalty_wait("other", POLICY) == 0
    await store.clear_failures("acct")
    assert await store.penalty_wait("acct", POLICY) == 0
    assert await store.add_failure("acct", POLICY) == 0


async def test_redis_matches_memory_on_one_sequence(redis: aioredis.Redis, prefix: str) -> None:
    stores: list[RateLimitStore] = [
        MemoryRateLimitStore(Clock()),
        RedisRateLimitStore(redis, prefix),
    ]
    shapes = []
    for store in stores:
        seq = [await store.check(f"k{i % 3}", SLOW, 4, cost=1 + i % 2) for i in range(12)]
        shapes.append([(r.allowed, r.remaining, round(r.retry_after, -2)) for r in seq])
    assert shapes[0] == shapes[1]


async def test_redis_keys_are_prefixed_and_expire(redis: aioredis.Redis, prefix: str) -> None:
    store = RedisRateLimitStore(redis, prefix)
    await store.check("g/api:user=u1", 10.0, 20)
    await store.add_failure("auth/account:email=ab", POLICY)
    assert 0 < await redis.pttl(f"{prefix}rl:g/api:user=u1") <= 100
    assert 3_599_000 < await redis.pttl(f"{prefix}rlp:auth/account:email=ab") <= 3_600_000


async def test_two_replicas_share_one_budget(redis_url: str, prefix: str) -> None:
    one, two = client(redis_url), client(redis_url)
    try:
        a, b = RedisRateLimitStore(one, prefix), RedisRateLimitStore(two, prefix)
        flags = [(await (a if i % 2 else b).check("shared", SLOW, 4)).allowed for i in range(6)]
        assert flags == [True] * 4 + [False, False]
        await a.add_failure("acct", POLICY)
        assert [await b.add_failure("acct", POLICY) for _ in range(4)][-1] > 0
    finally:
        await one.aclose()
        await two.aclose()


async def test_unknown_script_is_reloaded(redis: aioredis.Redis, prefix: str) -> None:
    store = RedisRateLimitStore(redis, prefix)
    assert (await store.check("x", SLOW, 2)).remaining == 1
    store._gcra._sha = "0" * 40  # as after a Redis restart: NOSCRIPT
    assert (await store.check("x", SLOW, 2)).remaining == 0
    assert store._gcra._sha != "0" * 40


PrivateRedis = Callable[[], AbstractAsyncContextManager[ServerHandle]]


async def test_fallback_degrades_keeps_limiting_and_recovers(private_redis: PrivateRedis) -> None:
    clock = Clock()
    async with private_redis() as server:
        redis_client = client(server.url)
        try:
            store = FallbackRateLimitStore(
                RedisRateLimitStore(redis_client), MemoryRateLimitStore(clock), clock=clock
            )
            assert (await store.check("k", SLOW, 2)).allowed
            assert not store.degraded
            await server.stop()
            flags = [(await store.check("k", SLOW, 2)).allowed for _ in range(3)]
            assert store.degraded
            assert flags == [True, True, False]  # per process, from a fresh bucket
            await server.start()
            assert not (await store.check("k", SLOW, 2)).allowed  # < 1 s: not retried yet
            assert store.degraded
            clock.now += 1.0
            assert (await store.check("k", SLOW, 2)).allowed  # Redis again (empty after restart)
            assert not store.degraded
        finally:
            await redis_client.aclose()
