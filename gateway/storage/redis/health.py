"""Redis health: a circuit breaker for the hot path and a status report for readiness.

Guarantees: after a failure, `Breaker.allow()` answers False for `cooldown` seconds except
for one probe per cooldown, so an outage costs the request path at most one timeout per
cooldown instead of one per request; `status()` never raises and never fails readiness on
its own, because a gateway without Redis keeps serving (CONTRACT "Failure behaviour").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.storage.redis.client import RedisHandle

log = logging.getLogger(__name__)


class Breaker:
    """Closed (use Redis) until a failure; then open for `cooldown`, probing once per cooldown."""

    def __init__(
        self, name: str, cooldown: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self._cooldown = cooldown
        self._clock = clock
        self._open_until: float | None = None

    @property
    def available(self) -> bool:
        """False from a failure until the next success."""
        return self._open_until is None

    def allow(self) -> bool:
        """Whether to try Redis now; while open, True for only one caller per cooldown."""
        if self._open_until is None:
            return True
        now = self._clock()
        if now < self._open_until:
            return False
        self._open_until = now + self._cooldown  # this caller probes; the others keep skipping
        return True

    def succeeded(self) -> None:
        """Records a successful command: closes the breaker (logging the recovery once)."""
        if self._open_until is not None:
            self._open_until = None
            log.info("redis available again", extra={"action": f"redis.{self.name}.up"})

    def failed(self, exc: BaseException) -> None:
        """Records a failed command: opens the breaker (logging the outage once)."""
        if self._open_until is None:
            # The exception's class only: its text could name the server.
            log.warning(
                "redis unavailable (%s); falling back", type(exc).__name__,
                extra={"action": f"redis.{self.name}.down"},
            )  # fmt: skip
        self._open_until = self._clock() + self._cooldown


async def status(handle: RedisHandle, *breakers: Breaker) -> dict[str, Any]:
    """`{"redis": "up" | "down", "degraded": [...]}` for a readiness or status endpoint.

    Informational: the caller must not turn "down" into not-ready, since the gateway serves
    without Redis (sessions from the database, per-replica rate limits).
    """
    up = await handle.ping()
    return {
        "redis": "up" if up else "down",
        "degraded": sorted(b.name for b in breakers if not b.available),
    }
