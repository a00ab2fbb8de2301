"""A raw-socket upstream that answers with exactly the bytes a test scripts, misbehaving on cue.

`run_raw_upstream(handler)` listens on 127.0.0.1; each connection is served by
`handler(conn)` with a `RawConn` that can read one request (head and body, Content-Length or
chunked) and write arbitrary bytes. `upstream.connections` counts accepted connections and
`upstream.requests` keeps every raw request (head + body) received, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class RawConn:
    """One accepted connection of the raw upstream."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    index: int
    seen: list[bytes]

    async def read_request(self) -> bytes | None:
        """The next request's raw bytes (head + framed body), or None at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lower = head.lower()
        body = b""
        if b"transfer-encoding: chunked" in lower:
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                data = await self.reader.readexactly(size + 2)
                body += size_line + data
                if size == 0:
                    break
        elif b"content-length:" in lower:
            length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
            body = await self.reader.readexactly(length)
        self.seen.append(head + body)
        return head + body

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


Handler = Callable[[RawConn], Awaitable[None]]


@dataclass
class RawUpstream:
    host: str
    port: int
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def respond_always(response: bytes, *, close_after: int | None = None) -> Handler:
    """A handler answering `response` to every request (closing after `close_after` of them)."""

    async def handle(conn: RawConn) -> None:
        served = 0
        while await conn.read_request() is not None:
            await conn.send(response)
            served += 1
            if close_after is not None and served >= close_after:
                break
        conn.close()

    return handle


@contextlib.asynccontextmanager
async def run_raw_upstream(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[RawUpstream]:
    """Serves `handler` on a free loopback port until the block ends."""
    upstream = RawUpstream("127.0.0.1", 0)
    tasks: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream.connections += 1
        writers.append(writer)
        conn = RawConn(reader, writer, upstream.connections, upstream.requests)
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            tasks.discard(task)
            writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=ssl_context)
    upstream.port = server.sockets[0].getsockname()[1]
    try:
        yield upstream
    finally:
        server.close()
        for writer in writers:
            writer.close()  # a handler waiting to read sees the end of the stream
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
