"""The main listener's connection protocol: a fast path for plain proxied requests.

Every connection starts here. Each request head is framed on `\\r\\n\\r\\n` and parsed by
httptools (C). A request takes the fast path (`FastPath.serve`: the proxy chain and the
upstream pool, answered on the socket directly; or `FastPath.verify` for exactly
`GET|HEAD /.gateway/verify`, the forward-auth question) only when all of these hold:

* it has no body and asks for no upgrade (no `Content-Length` > 0, no `Transfer-Encoding`,
  no `Expect`, no `Upgrade`), and is HTTP/1.0 or 1.1 in origin form (`/path`);
* its path cannot reach a gateway endpoint or be read differently by aiohttp's router: it
  does not start with `/.gateway` and holds no `%`, `\\`, `//` or `/.`;
* its head is small (under the parser's field limit) and repeats no singleton header;
* tracing is off (the aiohttp path carries the OpenTelemetry instrumentation).

Any other request hands the connection, with every byte not yet answered, to aiohttp's
`RequestHandler` (the gateway's `GatewayRequestHandler`) for the rest of its life, so
gateway endpoints, bodies, WebSockets, malformed input and their error answers behave
exactly as before. The hand-off happens only between requests, never mid-response, and is
counted in `gateway_front_handoffs_total` by the reason of the request that caused it
(`HANDOFF_REASONS`).

# SECURITY: the fast path answers only requests the aiohttp path would route to the proxy
# chain too, and runs that same chain; anything unusual goes the audited slow way.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, cast

import httptools
from aiohttp.http import HttpVersion10, HttpVersion11

from gateway.front.request import FastRequest
from gateway.observability.metrics import FRONT_HANDOFFS
from gateway.observability.tally import CounterTally, counter_tally
from gateway.proxy.flow import WriteGate
from gateway.server import TIMEOUT_RESPONSE

if TYPE_CHECKING:
    from gateway.front.serve import FastPath

log = logging.getLogger("gateway.server")

HEAD_END: Final = b"\r\n\r\n"
SINGLETONS: Final = frozenset(
    {
        b"content-length",
        b"content-location",
        b"content-range",
        b"content-type",
        b"etag",
        b"host",
        b"max-forwards",
        b"server",
        b"transfer-encoding",
        b"user-agent",
    }
)
SLOW_HEADERS: Final = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
"""Headers that always take the aiohttp path (bodies, 100-continue, protocol switches)."""
UNUSUAL_PATH: Final = re.compile(rb"[%\\]|//|/\.")
"""`%`, `\\`, `//` or `/.` anywhere in the path: aiohttp's router may read it differently."""
VERIFY_PATH: Final = b"/.gateway/verify"
"""The one gateway endpoint the fast path answers (forward-auth asks it for every request)."""
READ_BUFFER_LIMIT: Final = 256 * 1024
"""Bytes buffered from a client while its request is answered before reading pauses."""
HANDOFF_REASONS: Final = (
    "gateway-endpoint",  # a path under /.gateway other than the forward-auth question
    "body",  # Content-Length > 0, Transfer-Encoding or Expect
    "upgrade",  # an Upgrade header (WebSocket and others)
    "unusual-path",  # %, \, // or /. in the path, or not in origin form
    "large-head",  # over the fast path's head size, or ending in a bare LF
    "many-headers",  # more than limits.max_headers
    "repeated-header",  # a singleton header (Host, Content-Type, ...) more than once
    "malformed",  # not parsed as an HTTP/1.0 or 1.1 request
    "tracing",  # tracing is on: every request takes the instrumented aiohttp path
)
_HANDOFFS: Final[dict[str, CounterTally]] = {
    reason: counter_tally(FRONT_HANDOFFS.labels(reason)) for reason in HANDOFF_REASONS
}  # every reason is exported from the start (at 0), and no other label value can appear


def count_handoff(reason: str) -> None:
    """Counts one connection handed to aiohttp for `reason` (one of `HANDOFF_REASONS`)."""
    _HANDOFFS[reason].inc()


def _bare_lf_end(buffer: bytes) -> bool:
    """True when a head may already have ended with a bare LF (not framed by CRLF CRLF)."""
    return b"\n\n" in buffer or b"\n\r\n" in buffer


class HeadCollector:
    """httptools callbacks gathering one request head (the parser is reused per connection)."""

    __slots__ = (
        "complete",
        "headers",
        "keep_alive",
        "method",
        "parser",
        "repeated",
        "singletons",
        "slow",
        "url",
        "version",
    )

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.reset()

    def reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False
        self.slow = ""  # the hand-off reason its headers give, if any
        self.singletons: set[bytes] = set()  # singleton header names seen so far
        self.repeated = False  # one of them came twice
        self.keep_alive = False
        self.version = ""
        self.method = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        low = name.lower()
        if low in SINGLETONS:
            if low in self.singletons:
                self.repeated = True
            self.singletons.add(low)
        if low in SLOW_HEADERS or (low == b"content-length" and value.strip() != b"0"):
            self.slow = "upgrade" if low == b"upgrade" else "body"
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        # Read here: llhttp resets these once the message is complete.
        parser = self.parser
        self.keep_alive = parser.should_keep_alive()
        self.version = parser.get_http_version()
        self.method = parser.get_method()

    def on_message_complete(self) -> None:
        self.complete = True


class FrontSettings:
    """What every connection of one listener shares."""

    def __init__(
        self,
        slow_handler: Callable[[], asyncio.Protocol],
        fast_path: Callable[[], FastPath | None],
        *,
        max_head_bytes: int,
        max_headers: int,
        header_read_timeout: float | None,
        keepalive_timeout: float,
        tls: bool,
    ) -> None:
        self.slow_handler = slow_handler
        self.fast_path = fast_path
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self.header_read_timeout = header_read_timeout
        self.keepalive_timeout = keepalive_timeout
        self.scheme = "https" if tls else "http"
        self.connections: set[FrontProtocol] = set()
        self.closing = False

    async def shutdown(self, grace: float) -> None:
        """Closes idle fast connections at once; waits up to `grace` s for busy ones."""
        self.closing = True
        for conn in list(self.connections):
            conn.close_when_idle()
        if not self.connections:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.connections and loop.time() < deadline:
            waiters = [c.idle_waiter() for c in self.connections]
            await asyncio.wait(waiters, timeout=max(0.0, deadline - loop.time()))
        for conn in list(self.connections):
            conn.abort()


class FrontProtocol(asyncio.Protocol):
    """One client connection: fast-path requests in order, or a hand-off to aiohttp."""

    def __init__(self, settings: FrontSettings) -> None:
        self.settings = settings
        self.loop = asyncio.get_running_loop()  # once: each call costs a getpid() syscall
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.local_host = ""
        self.buffer = b""
        self.head = HeadCollector()
        self.task: asyncio.Task[bool] | None = None
        self.reading_paused = False
        self._writes = WriteGate()
        self._idle: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._idle_since = 0.0  # loop time of the last answer (or of the connection)
        self._close_after = False
        self.lost = False
        self.started = False
        self.verify = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else None
        local = transport.get_extra_info("sockname")
        if isinstance(local, tuple):
            host = f"[{local[0]}]" if ":" in local[0] else local[0]
            self.local_host = f"{host}:{local[1]}"
        self.settings.connections.add(self)
        self._idle_since = self.loop.time()
        self._arm(self.settings.keepalive_timeout, self._idle_timed_out)

    def data_received(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data
        if self.task is not None:
            if len(self.buffer) > READ_BUFFER_LIMIT and not self.reading_paused:
                self.reading_paused = True
                assert self.transport is not None
                self.transport.pause_reading()
            return
        self._next()

    def eof_received(self) -> bool:
        return False  # a half-closed client: close once the current answer is written

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True
        self._disarm()
        self.settings.connections.discard(self)
        self._writes.fail(ConnectionResetError("the client closed the connection"))
        self._set_idle()

    def pause_writing(self) -> None:
        self._writes.pause()

    def resume_writing(self) -> None:
        self._writes.resume()

    # -- what the fast path writes with --------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Writes response bytes (dropped once the client has gone)."""
        self.started = True
        if not self.lost and self.transport is not None:
            self.transport.write(data)

    async def drain(self) -> None:
        """Waits while the client reads slower than the response is written."""
        if self.lost:
            raise ConnectionResetError("the client closed the connection")
        await self._writes.wait()

    def abort(self) -> None:
        """Drops the connection at once (a response that cannot be completed)."""
        if self.transport is not None:
            self.transport.abort()

    # -- request framing -----------------------------------------------------------------------

    def _next(self) -> None:
        """Starts the next buffered request, hands the connection off, or waits for bytes."""
        buffer = self.buffer
        if not buffer:
            return
        if self._close_after or self.settings.closing:
            return
        end = buffer.find(HEAD_END)
        if end < 0:
            if len(buffer) > self.settings.max_head_bytes or _bare_lf_end(buffer):
                self._hand_off("large-head")  # aiohttp answers these heads its own way
            elif self._timer is None or self._timer_kind != "head":
                self._arm(self.settings.header_read_timeout, self._head_timed_out, "head")
            return
        end += 4
        request = self._parse(buffer[:end]) if end <= self.settings.max_head_bytes else "large-head"
        if isinstance(request, str):
            self._hand_off(request)
            return
        fast = self.settings.fast_path()
        if fast is None:
            self._hand_off("tracing")
            return
        if self._timer_kind == "head":
            self._disarm()  # the idle timer stays armed: `_idle_timed_out` checks for work
        self.buffer = buffer[end:]
        self.started = False
        keep_alive = self.head.keep_alive and request.version == HttpVersion11
        answer = fast.verify if self.verify else fast.serve
        self.task = task = self.loop.create_task(answer(request, self, keep_alive))
        task.add_done_callback(self._served)

    def _parse(self, head: bytes) -> FastRequest | str:
        """The request of one head when it may take the fast path, else the reason to hand
        the connection off (`HANDOFF_REASONS`); `self.verify` tells a forward-auth question
        (`GET|HEAD /.gateway/verify`) from a proxied request."""
        collector = self.head
        collector.reset()
        try:
            collector.parser.feed_data(head)
        except httptools.HttpParserUpgrade:
            return "upgrade"
        except httptools.HttpParserError:
            return "malformed"
        if collector.slow:
            return collector.slow
        if not collector.complete or collector.version not in ("1.1", "1.0"):
            return "malformed"
        url = collector.url
        if len(collector.headers) > self.settings.max_headers:
            return "many-headers"  # aiohttp answers 431
        path = url.partition(b"?")[0]
        self.verify = path == VERIFY_PATH and collector.method in (b"GET", b"HEAD")
        if not self.verify:
            if path.startswith(b"/.gateway"):
                return "gateway-endpoint"
            if not url.startswith(b"/") or UNUSUAL_PATH.search(path) is not None:
                return "unusual-path"
        if collector.repeated:
            return "repeated-header"
        version = collector.version
        assert self.transport is not None
        return FastRequest(
            collector.method.decode("ascii"),
            url.decode("utf-8", "surrogateescape"),
            HttpVersion11 if version == "1.1" else HttpVersion10,
            collector.headers,
            self.remote,
            self.settings.scheme,
            self.transport,
            self,
            self.local_host,
        )

    def _served(self, task: asyncio.Task[bool]) -> None:
        self.task = None
        keep_alive = not task.cancelled() and task.exception() is None and task.result()
        if self.lost:
            return
        if not keep_alive or self._close_after or self.settings.closing:
            assert self.transport is not None
            self.transport.close()
            return
        if self.reading_paused:
            self.reading_paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        self._set_idle()
        self._idle_since = self.loop.time()
        if self._timer is None:
            self._arm(self.settings.keepalive_timeout, self._idle_timed_out)
        self._next()

    def _hand_off(self, reason: str) -> None:
        """Gives the connection, with its unanswered bytes, to aiohttp's request handler."""
        count_handoff(reason)
        transport = self.transport
        assert transport is not None
        self._disarm()
        self.settings.connections.discard(self)
        self._set_idle()
        handler = self.settings.slow_handler()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        data, self.buffer = self.buffer, b""
        handler.data_received(data)

    # -- timers and shutdown -------------------------------------------------------------------

    _timer_kind = ""

    def _arm(self, delay: float | None, callback: Callable[[], None], kind: str = "idle") -> None:
        self._disarm()
        if delay:
            self._timer = self.loop.call_later(delay, callback)
            self._timer_kind = kind

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_kind = ""

    def _idle_timed_out(self) -> None:
        """Closes a connection idle for `keepalive_timeout` since its last answer. The timer
        is not re-armed per request: when it fires early (answers came since), it is armed
        again for the time left; while a request is in progress, `_served` arms it anew."""
        self._timer = None
        if self.task is not None or self.transport is None or self.lost:
            return
        now = self.loop.time()
        left = self._idle_since + self.settings.keepalive_timeout - now
        if left > 0:
            self._arm(left, self._idle_timed_out)
        elif not self.buffer:
            self.transport.close()

    def _head_timed_out(self) -> None:
        # SECURITY: slowloris: a head not complete within header_read_timeout is refused.
        self._timer = None
        if self.task is None and self.transport is not None and not self.lost:
            log.info("closed a slow client: header-read-timeout")
            self.transport.write(TIMEOUT_RESPONSE)
            self.transport.close()

    def close_when_idle(self) -> None:
        """For shutdown: closes now when no request is in progress, else after its answer."""
        self._close_after = True
        if self.task is None and self.transport is not None:
            self.transport.close()

    def idle_waiter(self) -> asyncio.Future[None]:
        """A future done once no request is in progress (or the connection is gone)."""
        if self._idle is None or self._idle.done():
            self._idle = self.loop.create_future()
            if self.task is None or self.lost:
                self._idle.set_result(None)
        return self._idle

    def _set_idle(self) -> None:
        if self._idle is not None and not self._idle.done():
            self._idle.set_result(None)
