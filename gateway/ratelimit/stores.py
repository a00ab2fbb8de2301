"""The rate-limit store port and its in-process adapter.

A store keeps GCRA buckets and failure-penalty counters by opaque key and owns the clock
(the in-process store an injected monotonic clock, the Redis store Redis' `TIME`), so every
caller of one store agrees on time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, Protocol, TypeVar

from gateway.ratelimit.gcra import MICROS, GcraDecision, RateResult, gcra, to_micros
from gateway.ratelimit.penalty import PenaltyPolicy, wait_us

V = TypeVar("V")


class RateCheck(NamedTuple):
    """One bucket to charge: `cost` requests against `burst` at `per_second`."""

    key: str
    per_second: float
    burst: int
    cost: int = 1


class RateLimitStore(Protocol):
    """Where buckets live. Every method is atomic per call.

    `check_many` is all-or-nothing: when any bucket limits, none is charged, so a refused
    request consumes no budget anywhere. Results are in the order of `checks`.
    """

    async def check(self, key: str, per_second: float, burst: int, cost: int = 1) -> RateResult:
        """Charge one bucket; see `gcra` for the exact rule."""
        ...

    async def check_many(self, checks: Sequence[RateCheck]) -> list[RateResult]:
        """Charge several buckets at once, all or nothing (one round trip in Redis)."""
        ...

    async def penalty_wait(self, key: str, policy: PenaltyPolicy) -> float:
        """Seconds an attempt for `key` must still wait (0: go ahead); changes nothing."""
        ...

    async def add_failure(self, key: str, policy: PenaltyPolicy) -> float:
        """Record one failure for `key`; return the seconds the next attempt must wait."""
        ...

    async def clear_failures(self, key: str) -> None:
        """Forget `key`'s failures (a success)."""
        ...


class BoundedTable(Generic[V]):
    """A map of at most `max_keys` entries, each with an expiry (µs).

    When full, expired entries are swept (at most once per second of the clock), then the
    least recently written entries are dropped. Expired entries are never returned.
    """

    def __init__(self, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be ≥ 1")
        self.max_keys = max_keys
        self._data: dict[str, tuple[int, V]] = {}
        self._last_sweep = -MICROS

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, now: int) -> V | None:
        """The live value of `key`, or None."""
        entry = self._data.get(key)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]

    def put(self, key: str, value: V, expires: int, now: int) -> None:
        """Store `value` until `expires`, making it the most recently written entry."""
        self._data.pop(key, None)
        if len(self._data) >= self.max_keys:
            self._make_room(now)
        self._data[key] = (expires, value)

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def _make_room(self, now: int) -> None:
        if now - self._last_sweep >= MICROS:
            self._last_sweep = now
            for dead in [k for k, (exp, _) in self._data.items() if exp <= now]:
                del self._data[dead]
        while len(self._data) >= self.max_keys:
            # SECURITY: dropping the oldest bucket forgets its consumption; bounded memory
            # under a key-flooding attack is worth more than that bucket's exactness.
            del self._data[next(iter(self._data))]


@dataclass(slots=True)
class _Failures:
    count: int
    last: int


class MemoryRateLimitStore:
    """In-process `RateLimitStore`: exact, bounded to `max_keys` buckets and counters each,
    per process (replicas do not share it). `clock` returns seconds (monotonic)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self._clock = clock
        self._buckets: BoundedTable[int] = BoundedTable(max_keys)
        self._failures: BoundedTable[_Failures] = BoundedTable(max_keys)

    def __len__(self) -> int:
        """How many buckets are held (for metrics and tests)."""
        return len(self._buckets)

    def _now(self) -> int:
        return to_micros(self._clock())

    async def check(self, key: str, per_second: float, burst: int, cost: int = 1) -> RateResult:
        return (await self.check_many([RateCheck(key, per_second, burst, cost)]))[0]

    async def check_many(self, checks: Sequence[RateCheck]) -> list[RateResult]:
        now = to_micros(self._clock())
        buckets = self._buckets
        decisions: list[GcraDecision] = [
            gcra(buckets.get(c.key, now), now, c.per_second, c.burst, c.cost) for c in checks
        ]
        results = [d.result for d in decisions]
        if all([r.allowed for r in results]):
            for check, decision in zip(checks, decisions, strict=True):
                buckets.put(check.key, decision.tat, decision.tat, now)
        return results

    async def penalty_wait(self, key: str, policy: PenaltyPolicy) -> float:
        now = self._now()
        state = self._failures.get(key, now)
        if state is None:
            return 0.0
        return wait_us(state.count, state.last, now, policy) / MICROS

    async def add_failure(self, key: str, policy: PenaltyPolicy) -> float:
        now = self._now()
        state = self._failures.get(key, now)
        count = 1 if state is None else state.count + 1
        self._failures.put(key, _Failures(count, now), now + policy.decay_us, now)
        return wait_us(count, now, now, policy) / MICROS

    async def clear_failures(self, key: str) -> None:
        self._failures.delete(key)
