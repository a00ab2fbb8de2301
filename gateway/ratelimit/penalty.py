"""The failure penalty: consecutive failures for one key make the next attempt wait.

Shared by the in-process store and the Redis script (which repeats these steps in Lua), so
both give the same waits. Guarantees, with the default policy:

* fewer than `threshold` (5) recorded failures never make anyone wait;
* after the k-th consecutive failure (k ≥ 5) the next attempt waits
  `min(base · 2^(k-5), cap)` = 1 s, 2 s, 4 s … at most 15 minutes, counted from that failure;
* the count is forgotten `decay` (1 hour) after the last failure, and a success clears it:
  there is no permanent lockout.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.ratelimit.gcra import MICROS

_MAX_DOUBLINGS = 40


@dataclass(frozen=True, slots=True)
class PenaltyPolicy:
    """How failures turn into waits; times in seconds."""

    threshold: int = 5
    base: float = 1.0
    cap: float = 900.0
    decay: float = 3600.0

    @property
    def base_us(self) -> int:
        return int(self.base * MICROS)

    @property
    def cap_us(self) -> int:
        return int(self.cap * MICROS)

    @property
    def decay_us(self) -> int:
        return int(self.decay * MICROS)


def delay_after(failures: int, policy: PenaltyPolicy) -> int:
    """Microseconds an attempt must wait after the `failures`-th consecutive failure."""
    if failures < policy.threshold:
        return 0
    doublings = min(failures - policy.threshold, _MAX_DOUBLINGS)
    return min(policy.base_us * (1 << doublings), policy.cap_us)


def wait_us(failures: int, last_failure: int, now: int, policy: PenaltyPolicy) -> int:
    """Microseconds still to wait at `now` after `failures` failures, the last at `last_failure`."""
    if now - last_failure >= policy.decay_us:
        return 0
    return max(0, last_failure + delay_after(failures, policy) - now)
