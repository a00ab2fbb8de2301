"""Write flow control for an asyncio protocol, shared by both sides of the proxy.

A transport calls its protocol's `pause_writing` when its write buffer passes the high-water
mark and `resume_writing` when it drains; a writer that must not outrun the peer awaits
`WriteGate.wait()` between writes. Guarantees: `wait` returns at once while writing is not
paused, else when it resumes; `fail(error)` makes a pending `wait` raise `error` (the
connection went away); at most one writer waits at a time (each protocol has one).
"""

from __future__ import annotations

import asyncio


class WriteGate:
    """Whether writing is paused, and the one writer waiting for it to resume."""

    __slots__ = ("_waiter", "paused")

    def __init__(self) -> None:
        self.paused = False
        self._waiter: asyncio.Future[None] | None = None

    def pause(self) -> None:
        """For `pause_writing`."""
        self.paused = True

    def resume(self) -> None:
        """For `resume_writing`: the waiting writer continues."""
        self.paused = False
        self._wake(None)

    def fail(self, error: BaseException) -> None:
        """For `connection_lost`: the waiting writer gets `error`."""
        self._wake(error)

    async def wait(self) -> None:
        """Returns once writing is not paused (at once when it is not)."""
        if not self.paused:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self, error: BaseException | None) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)
