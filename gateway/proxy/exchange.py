"""One request/response exchange over a pooled upstream connection.

`encode_head` serialises the request head once (refusing CR/LF anywhere in it), and
`Exchange.start` sends it, streams the request body beside the response (so an upstream
that answers early is heard), and returns once the final response head has arrived. A
reused connection that the upstream had already closed is retried once on a new connection,
only for an idempotent method without a body and only when no response byte was received.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final

from multidict import CIMultiDict

from gateway.proxy.conn import UpstreamClosed, UpstreamConnection
from gateway.proxy.pool import Origin, UpstreamPool

IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Methods whose bodiless requests still get `Content-Length: 0` (as aiohttp's client did).
BODYLESS_LENGTH: Final = frozenset({"POST", "PUT", "PATCH"})
LAST_CHUNK: Final = b"0\r\n\r\n"


class HeaderInjection(ValueError):
    """A header name or value held CR or LF: sending it would split the request."""


def encode_head(
    method: str, target: str, host: str | None, headers: CIMultiDict[str], framing: str | None
) -> bytes:
    """The request head; `host` is added unless None, `framing` is "chunked", "zero" or None."""
    lines = [f"{method} {target} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines.extend([f"{name}: {value}" for name, value in headers.items()])
    if framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
    elif framing == "zero":
        lines.append("Content-Length: 0")
    return join_head(lines)


def join_head(lines: list[str]) -> bytes:
    """An HTTP head (request or response) from its lines, or HeaderInjection.

    # SECURITY: a CR or LF inside a line would let a value start a new header, request or
    # response (header injection, smuggling, response splitting); the separators added here
    # are the only ones.
    """
    text = "\r\n".join(lines)
    breaks = len(lines) - 1
    if text.count("\n") != breaks or text.count("\r") != breaks:
        raise HeaderInjection("CR or LF in a header line")
    return (text + "\r\n\r\n").encode("utf-8", "surrogateescape")


def request_framing(
    method: str, headers: CIMultiDict[str], has_body: bool
) -> tuple[str | None, int | None]:
    """How the body is framed upstream ("chunked", "zero" or None) and its declared length."""
    declared = headers.get("Content-Length")
    if declared is not None:
        return None, int(declared)
    if has_body:
        return "chunked", None
    return ("zero" if method in BODYLESS_LENGTH else None), None


async def send_body(
    conn: UpstreamConnection, body: AsyncIterator[bytes], length: int | None
) -> None:
    """Streams the request body (chunked when `length` is None), honouring flow control."""
    transport = conn.transport
    assert transport is not None
    sent = 0
    async for chunk in body:
        if not chunk:
            continue
        sent += len(chunk)
        if length is None:
            transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
        else:
            transport.write(chunk)
        await conn.drain()
    if length is None:
        transport.write(LAST_CHUNK)
    elif sent != length:
        # SECURITY: a body shorter than announced leaves the upstream waiting mid-request;
        # the connection is never reused.
        raise UpstreamClosed("the request body ended before its Content-Length")
    conn.request_sent = True


class Exchange:
    """A request in flight: its connection, and the task writing its body (if any)."""

    def __init__(self, pool: UpstreamPool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.conn: UpstreamConnection | None = None
        self.writer: asyncio.Task[None] | None = None

    async def start(
        self,
        head: bytes,
        method: str,
        body: AsyncIterator[bytes] | None,
        length: int | None,
        timeouts: tuple[float | None, float | None],
    ) -> UpstreamConnection:
        """Sends the request and returns the connection once the response head is parsed."""
        connect_timeout, read_timeout = timeouts
        conn, reused = await self.pool.acquire(self.origin, connect_timeout)
        try:
            return await self._attempt(conn, head, method, body, length, read_timeout)
        except UpstreamClosed:
            if not (reused and body is None and method in IDEMPOTENT and not conn.received_any):
                raise
        # The upstream closed an idle connection as we used it: one retry, on a new one.
        conn.close()
        conn, _ = await self.pool.acquire(self.origin, connect_timeout, fresh=True)
        return await self._attempt(conn, head, method, None, length, read_timeout)

    async def _attempt(
        self,
        conn: UpstreamConnection,
        head: bytes,
        method: str,
        body: AsyncIterator[bytes] | None,
        length: int | None,
        read_timeout: float | None,
    ) -> UpstreamConnection:
        self.conn = conn
        conn.begin(head_only=method == "HEAD")
        assert conn.transport is not None
        conn.transport.write(head)
        if body is None:
            conn.request_sent = True
        else:
            self.writer = writer = asyncio.get_running_loop().create_task(
                send_body(conn, body, length)
            )
            writer.add_done_callback(conn.wake)
            while not conn.head_done and not writer.done():
                if conn.error is not None:
                    raise conn.error
                await conn.wait(None)  # the body is still being sent: no read timeout yet
            if not conn.head_done and (error := writer.exception()) is not None:
                raise error
        await conn.read_head(read_timeout)
        return conn

    def finish(self) -> None:
        """Gives the connection back: to the idle set when safe, else closed."""
        conn = self.conn
        if conn is None:
            return
        self.conn = None
        if self._stop_writer():
            conn.close()  # the upstream answered before reading the whole body
        self.pool.release(self.origin, conn)

    def abort(self) -> None:
        """Closes the connection of a failed or abandoned exchange."""
        self._stop_writer()
        if self.conn is not None:
            self.conn.close()
            self.pool.release(self.origin, self.conn)
            self.conn = None

    def _stop_writer(self) -> bool:
        """Cancels a body writer still running (True), or collects its outcome (False)."""
        writer = self.writer
        if writer is None:
            return False
        if not writer.done():
            writer.cancel()
            return True
        if not writer.cancelled():
            writer.exception()  # retrieved: the forwarder already mapped it
        return False
