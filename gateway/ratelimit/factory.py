"""The composition root's one call: the rate-limit store for this deployment."""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.ratelimit.fallback import FallbackRateLimitStore
from gateway.ratelimit.redis_store import RedisClient, RedisRateLimitStore
from gateway.ratelimit.stores import MemoryRateLimitStore, RateLimitStore


def build_store(
    redis: RedisClient | None,
    prefix: str = "gw:",
    *,
    clock: Callable[[], float] = time.monotonic,
    max_keys: int = 100_000,
) -> RateLimitStore:
    """In-process without Redis; with Redis, Redis falling back to in-process on errors.

    The result's `degraded` attribute (only on the Redis variant) is True while limits are
    per process; read it with `is_degraded`.
    """
    memory = MemoryRateLimitStore(clock, max_keys)
    if redis is None:
        return memory
    return FallbackRateLimitStore(RedisRateLimitStore(redis, prefix), memory, clock=clock)


def is_degraded(store: RateLimitStore) -> bool:
    """True when `store` is a Redis store currently answering from in-process buckets."""
    return isinstance(store, FallbackRateLimitStore) and store.degraded
