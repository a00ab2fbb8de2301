"""One keep-alive HTTP/1.1 connection to an upstream, its responses parsed by httptools (C).

A connection carries one exchange at a time: `begin()` before the request is written, then
`read_head()`, then `read_chunk()` until it returns b"". The parser is fresh for each
exchange, so nothing of an earlier response can leak into the next one. Reading applies
back-pressure (the socket is paused while more than `HIGH_WATER` bytes wait) and writing
honours the transport's flow control (`drain()`).

`reusable` is True only when the response was read to its framed end, both sides allowed
keep-alive, the request was fully sent, and no byte arrived beyond the response.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import cast

import httptools

from gateway.proxy.flow import WriteGate

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
_FRAMING = (b"content-length", b"transfer-encoding")


class UpstreamClosed(ConnectionError):
    """The upstream closed (or reset) the connection before the response was complete."""


class UpstreamProtocolError(ConnectionError):
    """The upstream's response could not be parsed, or its framing was ambiguous."""


class UpstreamConnection(asyncio.Protocol):
    """An asyncio protocol holding one upstream socket and the exchange in progress on it."""

    def __init__(self, on_lost: Callable[[UpstreamConnection], None]) -> None:
        self.loop = asyncio.get_running_loop()  # once: each call costs a getpid() syscall
        self.transport: asyncio.Transport | None = None
        self.on_lost = on_lost
        self.closed = False
        self.idle_since = 0.0
        self.exchanges = 0
        self._writes = WriteGate()
        self._read_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._deadline: float | None = None  # loop time the pending wait times out at
        self._timer: asyncio.TimerHandle | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self._reset(head_only=False)

    def _reset(self, head_only: bool) -> None:
        self.head_only = head_only
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.framed = False
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.received_any = False
        self.request_sent = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.error: BaseException | None = None
        self._skip_interim = False

    # -- lifecycle ---------------------------------------------------------------------------

    def begin(self, *, head_only: bool) -> None:
        """Prepares for a new exchange (the request is written right after)."""
        self._reset(head_only)
        self.exchanges += 1
        self.parser = httptools.HttpResponseParser(self)

    @property
    def reusable(self) -> bool:
        """True when another request may safely follow on this connection."""
        return (
            self.complete
            and self.keep_alive
            and self.request_sent
            and self.error is None
            and not self.closed
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        """Closes the socket (idempotent); an exchange in progress fails with UpstreamClosed."""
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True
        self._stop_timer()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.parser is not None and not self.complete and self.error is None:
            if self.head_done and not self.framed and not self.head_only:
                self.complete = True  # a body delimited by the end of the connection
            else:
                self.error = UpstreamClosed("the upstream closed the connection")
        self.keep_alive = False
        self._wake()
        self._stop_timer()
        self._writes.fail(UpstreamClosed("the upstream closed the connection"))
        self.on_lost(self)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None or self.complete:
            # SECURITY: bytes outside an expected response mean the two sides disagree on
            # framing (desync); the connection is never used again.
            self.keep_alive = False
            self.close()
            return
        self.received_any = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamProtocolError("the upstream switched protocols unasked"))
        except httptools.HttpParserError as exc:
            # SECURITY: a response we cannot frame exactly ends the exchange and the connection.
            self._fail(UpstreamProtocolError(f"invalid upstream response: {exc}"))

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost decides what the EOF meant

    def pause_writing(self) -> None:
        self._writes.pause()

    def resume_writing(self) -> None:
        self._writes.resume()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self.reason = reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in _FRAMING:
            self.framed = True
        self.headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        if self.complete:
            return  # a second response nobody asked for: keep-alive is already off
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # An interim response (100 Continue, 103 Early Hints): the final one follows.
            self.headers = []
            self.framed = False
            self._skip_interim = True
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self.head_done = True
        if self.head_only:
            # SECURITY: llhttp cannot be told the request was HEAD, so it may wait for a body
            # that never comes; the response ends here and the connection is not reused.
            self.complete = True
            self.keep_alive = False
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return  # HEAD: a body that should not exist (connection not reused)
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_begin(self) -> None:
        if self.complete:
            self.keep_alive = False  # SECURITY: a second response nobody asked for

    def on_message_complete(self) -> None:
        if self._skip_interim:
            self._skip_interim = False
            return
        self.complete = True
        self._wake()

    # -- reading and writing -----------------------------------------------------------------

    def _fail(self, error: BaseException) -> None:
        self.error = error
        self.keep_alive = False
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wake(self, _: object = None) -> None:
        """Wakes a pending `wait()` (e.g. when the request body writer finishes)."""
        self._wake()

    async def wait(self, idle_limit: float | None) -> None:
        """Waits for the next event on this connection; TimeoutError after `idle_limit` s.

        The deadline timer is not armed and cancelled per wait (~0.9 µs, once per proxied
        request): one timer stays armed at or before the pending deadline and, when it fires
        early (the wait it was armed for has ended), re-arms itself for the deadline of the
        wait now pending, if any. A wait therefore times out exactly as a timer of its own
        would.
        """
        loop = self.loop
        waiter = self._waiter = loop.create_future()
        if idle_limit is None:
            self._deadline = None
        else:
            self._deadline = deadline = loop.time() + idle_limit
            timer = self._timer
            if timer is None or timer.when() > deadline:
                if timer is not None:
                    timer.cancel()
                self._timer = loop.call_at(deadline, self._deadline_reached)
        try:
            await waiter
        finally:
            self._waiter = None

    def _deadline_reached(self) -> None:
        """The timer fired: the pending wait times out, or the timer moves to its deadline."""
        self._timer = None
        waiter, deadline = self._waiter, self._deadline
        if waiter is None or waiter.done() or deadline is None:
            return
        if self.loop.time() < deadline:
            self._timer = self.loop.call_at(deadline, self._deadline_reached)
        else:
            waiter.set_exception(TimeoutError("the upstream sent nothing in time"))

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def read_head(self, idle_limit: float | None) -> None:
        """Returns once the final response head is parsed; raises the exchange's error."""
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self.wait(idle_limit)

    def take_body(self) -> bytes:
        """The whole buffered body of a complete response (call only when `complete`)."""
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        return body

    async def read_chunk(self, idle_limit: float | None) -> bytes:
        """The next piece of the response body; b"" once the response is complete."""
        while True:
            if self.chunks:
                chunk = self.chunks.popleft()
                self.buffered -= len(chunk)
                if self._read_paused and self.buffered < LOW_WATER and not self.closed:
                    self._read_paused = False
                    assert self.transport is not None
                    self.transport.resume_reading()
                return chunk
            if self.error is not None:
                raise self.error
            if self.complete:
                return b""
            await self.wait(idle_limit)

    async def drain(self) -> None:
        """Waits while the transport's write buffer is above its high-water mark."""
        if self.closed:
            raise UpstreamClosed("the upstream closed the connection")
        await self._writes.wait()
