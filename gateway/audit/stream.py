"""Following the audit stream as it grows: one change signal per process, one cursor per reader.

How new events are noticed: while anyone follows the stream, a poller reads the highest `seq`
every `interval` seconds (50 ms by default), and any change-bus notice wakes followers at
once. Polling the table is what reaches every replica, with or without a bus: events are
committed to the shared database before anyone is told.

Guarantees of a `Cursor`: every event committed after its starting point (and matching its
tenant) is returned exactly once, in `seq` order per read. On PostgreSQL, where a transaction
can commit a later `seq` a moment before an earlier one of another chain, each read looks
`LOOKBACK` sequence numbers back and skips what it already returned, so such an event is
delivered late rather than lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from gateway.audit.store import AuditQuery, AuditReader, StoredEvent

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.05
LOOKBACK = 50
PAGE = 200


class ChangeSignal:
    """A broadcast "something changed": take `current()` before reading, then wait on it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        """The event the next `notify` sets."""
        return self._event

    def notify(self) -> None:
        """Wakes everyone waiting on the current event, and starts a new one."""
        event, self._event = self._event, asyncio.Event()
        event.set()


class AuditFeed:
    """The process-wide change signal over the audit table (see the module docstring)."""

    def __init__(self, reader: AuditReader, interval: float = POLL_INTERVAL) -> None:
        self.reader = reader
        self.signal = ChangeSignal()
        self._interval = interval
        self._followers = 0
        self._active = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    def start(self) -> None:
        """Starts the poller (it idles while nobody follows)."""
        self._task = asyncio.create_task(self._poll())

    async def close(self) -> None:
        """Stops the poller and tells every follower to end (graceful shutdown)."""
        self.closed.set()
        self.signal.notify()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def on_bus(self, topic: str, payload: Mapping[str, Any]) -> None:
        """Change-bus callback: any change notice may come with new events."""
        self.signal.notify()

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        """Counts a follower for the duration of the block (the poller runs while any do)."""
        self._followers += 1
        self._active.set()
        try:
            yield
        finally:
            self._followers -= 1
            if self._followers == 0:
                self._active.clear()

    async def _poll(self) -> None:
        last = -1
        while True:
            await self._active.wait()
            try:
                seq = await self.reader.last_seq()
            except Exception:
                log.warning("audit poll failed", exc_info=True)
                seq = last
            if seq != last:
                last = seq
                self.signal.notify()
            await asyncio.sleep(self._interval)


class Cursor:
    """One follower's position in the stream, optionally limited to one tenant.

    `lookback` is 0 where commits follow `seq` order (SQLite: one writer); on PostgreSQL it
    is how many sequence numbers below the position are re-read for late commits.
    """

    def __init__(
        self, reader: AuditReader, tenant_id: str | None, after: int, lookback: int = 0
    ) -> None:
        self._reader = reader
        self._tenant_id = tenant_id
        self._start = after
        self.position = after
        self._lookback = lookback
        self._seen: set[int] = set()

    async def read(self) -> list[StoredEvent]:
        """The events not yet returned, oldest first."""
        out = await self._late() if self._lookback else []
        while True:
            query = AuditQuery(tenant_id=self._tenant_id, after_seq=self.position, limit=PAGE)
            page = await self._reader.find(query)
            out.extend(self._take(page))
            if len(page) < PAGE:
                return out

    async def _late(self) -> list[StoredEvent]:
        """Events below the position (but after the start) that committed after it moved."""
        floor = max(self._start, self.position - self._lookback)
        self._seen = {s for s in self._seen if s > floor}
        if floor >= self.position:
            return []
        query = AuditQuery(
            tenant_id=self._tenant_id, after_seq=floor, before_seq=self.position + 1,
            limit=self._lookback,
        )  # fmt: skip
        return self._take([e for e in await self._reader.find(query) if e.seq not in self._seen])

    def _take(self, events: list[StoredEvent]) -> list[StoredEvent]:
        for event in events:
            if self._lookback:
                self._seen.add(event.seq)
            self.position = max(self.position, event.seq)
        return events
