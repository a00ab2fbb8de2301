"""GCRA (the generic cell rate algorithm): the one limiting rule every store applies.

A bucket is one number, the theoretical arrival time (TAT). All arithmetic is on integer
microseconds so that the in-process store and the Redis Lua script (which does the same
steps on Redis' `TIME`) give identical answers, with no floating-point drift at the edge of
a burst.

Guarantees of `gcra`, for a rate of `per_second` and a `burst` of B:

* from idle, exactly B requests of cost 1 are allowed at the same instant and the next is
  limited, with `retry_after` = one emission interval (1 / rate);
* afterwards one more request is allowed per emission interval;
* a limited request does not change the bucket (it returns the stored TAT);
* a request whose cost exceeds the burst is always limited.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

MICROS = 1_000_000


class RateResult(NamedTuple):
    """One bucket's answer to one request (a named tuple: built on every limited request).

    `limit` is the burst (the quota a client may use at once), `remaining` how many more
    requests of cost 1 would be allowed right now, `retry_after` the seconds until this
    request would be allowed (0 when allowed), `reset_after` the seconds until the bucket is
    full (idle) again.
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after: float
    reset_after: float


class GcraDecision(NamedTuple):
    """`gcra`'s answer: the result and the TAT (µs) to store (unchanged when limited)."""

    result: RateResult
    tat: int


@functools.lru_cache(maxsize=1024)  # pure, and asked for every limited request
def emission_interval(per_second: float) -> int:
    """Microseconds between two requests at `per_second` (≥ 1); `per_second` must be > 0."""
    if per_second <= 0:
        raise ValueError("per_second must be positive")
    return max(1, round(MICROS / per_second))


def gcra(tat: int | None, now: int, per_second: float, burst: int, cost: int = 1) -> GcraDecision:
    """Decide one request against a bucket; `tat` and `now` are integer microseconds.

    `tat` is the stored TAT or None for an unknown (idle) bucket. See the module docstring
    for the exact guarantees; `cost` may be 0 to read the bucket without consuming.
    """
    if burst < 1 or cost < 0:
        raise ValueError("burst must be ≥ 1 and cost ≥ 0")
    interval = emission_interval(per_second)
    base = now if tat is None or tat < now else tat
    new_tat = base + cost * interval
    allow_at = new_tat - burst * interval
    if now < allow_at:
        result = RateResult(False, burst, 0, (allow_at - now) / MICROS, (base - now) / MICROS)
        return GcraDecision(result, base if tat is not None else now)
    remaining = (now - allow_at) // interval
    return GcraDecision(RateResult(True, burst, remaining, 0.0, (new_tat - now) / MICROS), new_tat)


def to_micros(seconds: float) -> int:
    """Seconds (a clock reading) as integer microseconds."""
    return int(seconds * MICROS)


def window_seconds(burst: int, per_second: float) -> int:
    """Whole seconds (≥ 1) in which an idle bucket refills `burst` requests at `per_second`."""
    return max(1, math.ceil(round(burst / per_second, 6)))
