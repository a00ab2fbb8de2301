"""An optional JSON-lines copy of the audit stream, on standard output or in a file, for log
shippers.

Guarantees: each event is one line (the contract's shape plus `seq`, `prev_hash`, `hash`),
written in `seq` order as the feed notices it; with a `position_file`, the last `seq`
written survives restarts, so a restarted process continues where it stopped instead of
skipping or repeating events. The database stays the record: the sink is a copy, and a
failing sink never blocks or undoes a change. With several replicas, each runs its own
sink over the same shared table: give each its own file or let one replica (or
`gateway audit tail -f`) ship the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import TextIO

from gateway.audit.store import StoredEvent
from gateway.audit.stream import AuditFeed, Cursor

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0


def event_line(event: StoredEvent) -> str:
    """One event as a JSON line (no secrets: events never hold any)."""
    return json.dumps(event.view(), separators=(",", ":"), sort_keys=True) + "\n"


class JsonLinesSink:
    """Copies every new audit event to `target` ("-" or "stdout" for standard output)."""

    def __init__(self, feed: AuditFeed, target: str, position_file: Path | None = None) -> None:
        self._feed = feed
        self._target = target
        self._position_file = position_file
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Starts copying from the saved position, else from the current end of the stream."""
        start = self._saved_position()
        if start is None:
            start = await self._feed.reader.last_seq()
        self._task = asyncio.create_task(self._run(Cursor(self._feed.reader, None, start)))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _saved_position(self) -> int | None:
        path = self._position_file
        if path is None or not path.exists():
            return None
        text = path.read_text().strip()
        return int(text) if text.isdigit() else None

    async def _run(self, cursor: Cursor) -> None:
        with self._feed.following():
            while not self._feed.closed.is_set():
                changed = self._feed.signal.current()
                before = cursor.position
                try:
                    self._write(await cursor.read(), cursor.position)
                except Exception:
                    log.warning("audit sink failed; retrying", exc_info=True)
                    # Rewind: what was read but not written is read again.
                    cursor = Cursor(self._feed.reader, None, before)
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), RETRY_SECONDS)

    def _write(self, events: list[StoredEvent], position: int) -> None:
        if not events:
            return
        lines = "".join(event_line(e) for e in events)
        if self._target in ("-", "stdout"):
            self._emit(sys.stdout, lines)
        else:
            with open(self._target, "a", encoding="utf-8") as out:
                self._emit(out, lines)
        if self._position_file is not None:
            self._position_file.write_text(f"{position}\n")

    @staticmethod
    def _emit(out: TextIO, lines: str) -> None:
        out.write(lines)
        out.flush()
