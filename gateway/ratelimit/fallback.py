"""A store that survives Redis outages by limiting in-process until Redis is back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from redis.exceptions import RedisError

from gateway.ratelimit.gcra import RateResult
from gateway.ratelimit.penalty import PenaltyPolicy
from gateway.ratelimit.stores import RateCheck, RateLimitStore

log = logging.getLogger("gateway.ratelimit")
T = TypeVar("T")

STORE_ERRORS = (RedisError, ConnectionError, TimeoutError, OSError)
"""Failures of the primary store that switch to the fallback (never a programming error)."""


class FallbackRateLimitStore:
    """`RateLimitStore` that uses `primary` and, while it fails, `fallback`.

    Guarantees: a primary failure (or a call slower than `timeout` seconds) answers from the
    fallback and sets `degraded`; while degraded the primary is retried at most once per
    `retry_interval` seconds of `clock`, and the first success clears `degraded`. Requests
    are never let through unlimited and never all refused because the primary is down.
    """

    def __init__(
        self,
        primary: RateLimitStore,
        fallback: RateLimitStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        retry_interval: float = 1.0,
        timeout: float = 0.5,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.degraded = False
        """True while limits are enforced per process because the primary failed."""
        self._clock = clock
        self._retry_interval = retry_interval
        self._timeout = timeout
        self._failed_at = 0.0

    async def _run(
        self, primary: Callable[[], Awaitable[T]], fallback: Callable[[], Awaitable[T]]
    ) -> T:
        if self.degraded and self._clock() - self._failed_at < self._retry_interval:
            return await fallback()
        try:
            async with asyncio.timeout(self._timeout):
                result = await primary()
        except STORE_ERRORS as exc:
            # SECURITY: fail to the in-process limits, neither open (no limits) nor closed
            # (refuse everyone) while the shared store is unreachable.
            if not self.degraded:
                log.warning("rate-limit store unavailable, limiting per process: %r", exc)
            self.degraded = True
            self._failed_at = self._clock()
            return await fallback()
        if self.degraded:
            log.warning("rate-limit store available again")
            self.degraded = False
        return result

    async def check(self, key: str, per_second: float, burst: int, cost: int = 1) -> RateResult:
        return (await self.check_many([RateCheck(key, per_second, burst, cost)]))[0]

    async def check_many(self, checks: Sequence[RateCheck]) -> list[RateResult]:
        return await self._run(
            lambda: self.primary.check_many(checks), lambda: self.fallback.check_many(checks)
        )

    async def penalty_wait(self, key: str, policy: PenaltyPolicy) -> float:
        return await self._run(
            lambda: self.primary.penalty_wait(key, policy),
            lambda: self.fallback.penalty_wait(key, policy),
        )

    async def add_failure(self, key: str, policy: PenaltyPolicy) -> float:
        return await self._run(
            lambda: self.primary.add_failure(key, policy),
            lambda: self.fallback.add_failure(key, policy),
        )

    async def clear_failures(self, key: str) -> None:
        """Clears both stores, so counts kept during an outage do not outlive a success."""
        await self.fallback.clear_failures(key)
        await self._run(lambda: self.primary.clear_failures(key), _nothing)


async def _nothing() -> None:
    return None
