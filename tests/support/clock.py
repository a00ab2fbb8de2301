"""A clock that tests set by hand."""

from __future__ import annotations

EPOCH = 1_700_000_000.0
"""Where a `ManualClock` starts unless told: a plausible present, in Unix seconds."""


class ManualClock:
    """Reads `now` (seconds); tests move it by assigning or adding to `now`."""

    def __init__(self, now: float = EPOCH) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
