"""The fast front's keep-alive deadline, on real loopback sockets: an idle connection is
closed `keepalive_timeout` after its last answer, never while a request is in progress, and a
connection that keeps sending requests stays open however long it lives."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from gateway.front.protocol import FrontProtocol, FrontSettings

KEEPALIVE = 0.3
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
REQUEST = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"


class SlowPath:
    """A stand-in for `FastPath`: answers once `release` is set (at once by default)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()

    async def serve(self, _request: Any, sink: Any, keep_alive: bool) -> bool:
        self.started.set()
        await self.release.wait()
        sink.write(ANSWER)
        return keep_alive


@contextlib.asynccontextmanager
async def front(path: SlowPath) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    def no_hand_off() -> asyncio.Protocol:
        raise AssertionError("every request here takes the fast path")

    settings = FrontSettings(
        no_hand_off,
        lambda: path,  # type: ignore[arg-type, return-value]
        max_head_bytes=8192,
        max_headers=100,
        header_read_timeout=None,
        keepalive_timeout=KEEPALIVE,
        tls=False,
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FrontProtocol(settings), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(REQUEST)
    return await asyncio.wait_for(reader.readexactly(len(ANSWER)), 5)


async def closed_after(reader: asyncio.StreamReader) -> float:
    """Seconds until the server closes the connection (at most 5)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await asyncio.wait_for(reader.read(1), 5) == b""
    return loop.time() - started


async def test_an_idle_connection_is_closed_after_the_keepalive_timeout() -> None:
    async with front(SlowPath()) as (reader, writer):
        assert await ask(reader, writer) == ANSWER
        assert await closed_after(reader) >= KEEPALIVE * 0.8


async def test_a_request_longer_than_the_timeout_is_answered_then_timed_afresh() -> None:
    path = SlowPath()
    path.release.clear()
    async with front(path) as (reader, writer):
        writer.write(REQUEST)
        await path.started.wait()
        await asyncio.sleep(KEEPALIVE * 3)  # the idle deadline passes while the request runs
        path.release.set()
        answer = await asyncio.wait_for(reader.readexactly(len(ANSWER)), 5)
        assert answer == ANSWER
        assert await closed_after(reader) >= KEEPALIVE * 0.8


async def test_steady_requests_keep_the_connection_open() -> None:
    async with front(SlowPath()) as (reader, writer):
        for _ in range(8):  # 8 times KEEPALIVE/2: twice the timeout in all
            assert await ask(reader, writer) == ANSWER
            await asyncio.sleep(KEEPALIVE / 2)
        assert await ask(reader, writer) == ANSWER
