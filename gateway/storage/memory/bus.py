"""The in-process `ChangeBus` of the embedded default (one process, no Redis).

Guarantees: `publish` returns only after every subscriber has run, so a revocation is in
effect in this process when `publish` returns; each subscriber gets its own JSON round-tripped
copy of the payload, exactly what a Redis-backed bus would deliver, so code that works here
does not silently depend on sharing objects; a failing subscriber is logged and does not stop
the others.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from gateway.storage.ports import BusCallback

log = logging.getLogger(__name__)


class MemoryChangeBus:
    """`ChangeBus` for one process: direct, ordered calls to the subscribers."""

    def __init__(self) -> None:
        self._subscribers: list[BusCallback] = []

    async def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        """Delivers `payload` (must be JSON-serializable) to every subscriber, in order."""
        wire = json.dumps(dict(payload), separators=(",", ":"))
        for callback in list(self._subscribers):
            try:
                await callback(topic, json.loads(wire))
            except Exception:
                log.exception("change-bus subscriber failed", extra={"action": topic})

    def subscribe(self, callback: BusCallback) -> Callable[[], None]:
        """Adds `callback`; the returned function removes it again (idempotent)."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe
