"""The fast front (`gateway.front`) inside the real `gateway serve` process, on raw sockets.

Plain bodiless proxied requests are answered by the fast path; anything else hands the
connection to aiohttp. These tests pin what a client sees at that seam: ordering of
pipelined answers, a connection that changes hands mid-life, framing of streamed bodies,
connection closing, slow heads, and that both paths answer the same request the same way.

Which path answered shows in `gateway_front_handoffs_total`: a connection leaves the fast
front for good, so its answers after a counted hand-off are aiohttp's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.http import SERVER_SOFTWARE

from tests.support.gateway_proc import GatewayProcess, base_config, front_handoffs, run_gateway
from tests.support.raw_upstream import Handler, RawConn, RawUpstream, run_raw_upstream

pytestmark = pytest.mark.e2e


async def echo_path(conn: RawConn) -> None:
    """Answers every request with its request line as the body."""
    while (raw := await conn.read_request()) is not None:
        line = raw.split(b"\r\n", 1)[0]
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(line), line))
    conn.close()


def _config(upstream: RawUpstream, workdir: Path, **limits: float) -> dict[str, object]:
    config = base_config(upstream.url, workdir)
    config["upstreams"][0]["public_paths"] = ["/public/*"]  # type: ignore[index]
    if limits:
        config["limits"] = limits
    return config


@contextlib.asynccontextmanager
async def gateway_with(
    handler: Handler = echo_path, **limits: float
) -> AsyncIterator[GatewayProcess]:
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            run_raw_upstream(handler) as up,
            run_gateway(Path(tmp), _config(up, Path(tmp), **limits)) as gw,
        ):
            yield gw


class Client:
    """One raw keep-alive connection that reads responses one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lower-case names), the de-framed body."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if head_only:
            body = b""
        elif "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                body += await self.reader.readexactly(size)
                await self.reader.readexactly(2)
            await self.reader.readexactly(2)
        else:
            body = b""
        return status, headers, body

    async def at_eof(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 10) == b""


@contextlib.asynccontextmanager
async def connect(gw: GatewayProcess) -> AsyncIterator[Client]:
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        yield Client(reader, writer)
    finally:
        writer.close()


def get(path: str, *extra: str, version: str = "1.1", method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: x", *extra, "", ""]
    return "\r\n".join(lines).encode()


class Handoffs:
    """The fast front's hand-offs counted since this object was started (the readiness probe
    before a test is one)."""

    def __init__(self, gw: GatewayProcess) -> None:
        self.gw = gw
        self.base: dict[str, int] = {}

    async def start(self) -> Handoffs:
        self.base = await front_handoffs(self.gw.metrics_port)
        return self

    async def since(self) -> dict[str, int]:
        now = await front_handoffs(self.gw.metrics_port)
        return {k: n - self.base.get(k, 0) for k, n in now.items() if n != self.base.get(k, 0)}


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with gateway_with() as gw, connect(gw) as client:
        counted = await Handoffs(gw).start()
        await client.send(get("/public/a") + get("/public/b") + get("/public/c"))
        answers = [await client.response() for _ in range(3)]
        assert [a[2] for a in answers] == [
            b"GET /public/%s HTTP/1.1" % p for p in (b"a", b"b", b"c")
        ]
        assert await counted.since() == {}


async def test_a_connection_handed_to_aiohttp_keeps_serving_in_order() -> None:
    async with gateway_with() as gw, connect(gw) as client:
        counted = await Handoffs(gw).start()
        await client.send(get("/public/a"))
        body = (await client.response())[2]
        assert (body, await counted.since()) == (b"GET /public/a HTTP/1.1", {})
        # A gateway endpoint and a body both take the aiohttp path, on the same connection.
        await client.send(get("/.gateway/healthz") + get("/public/b"))
        status, _, body = await client.response()
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        body = (await client.response())[2]
        assert body == b"GET /public/b HTTP/1.1"  # aiohttp's now:
        assert await counted.since() == {"gateway-endpoint": 1}
        post = b"POST /public/c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        await client.send(post + get("/public/d"))
        assert (await client.response())[2] == b"POST /public/c HTTP/1.1"
        assert (await client.response())[2] == b"GET /public/d HTTP/1.1"
        assert await counted.since() == {"gateway-endpoint": 1}  # handed off once, for good


async def test_both_paths_answer_a_denial_identically() -> None:
    async with gateway_with() as gw:
        counted = await Handoffs(gw).start()
        async with connect(gw) as first:
            await first.send(get("/app/x", "Accept: application/json"))
            fast_answer = await first.response()
            assert await counted.since() == {}
        async with connect(gw) as slow:
            await slow.send(get("/.gateway/healthz") + get("/app/x", "Accept: application/json"))
            await slow.response()
            slow_answer = await slow.response()
            assert await counted.since() == {"gateway-endpoint": 1}
    assert fast_answer[0] == slow_answer[0] == 401
    assert fast_answer[2] == slow_answer[2]
    varying = {"date", "x-request-id"}  # neither path sends aiohttp's Server banner
    assert {k: v for k, v in fast_answer[1].items() if k not in varying} == {
        k: v for k, v in slow_answer[1].items() if k not in varying
    }


async def test_http10_and_connection_close_end_the_connection() -> None:
    async with gateway_with() as gw:
        async with connect(gw) as client:
            await client.send(get("/public/a", version="1.0"))
            status, headers, body = await client.response()
            assert (status, body, headers["connection"]) == (
                200,
                b"GET /public/a HTTP/1.1",
                "close",
            )
            assert await client.at_eof()
        async with connect(gw) as client:
            await client.send(get("/public/a", "Connection: close"))
            assert (await client.response())[0] == 200
            assert await client.at_eof()


async def test_head_answers_headers_only_and_keeps_the_connection() -> None:
    async with gateway_with() as gw, connect(gw) as client:
        await client.send(get("/public/a", method="HEAD") + get("/public/b"))
        status, headers, _ = await client.response(head_only=True)
        assert (status, headers["content-length"]) == (200, str(len(b"HEAD /public/a HTTP/1.1")))
        # The next answer starts right after the head: no body bytes were sent for HEAD.
        assert (await client.response())[2] == b"GET /public/b HTTP/1.1"


async def slow_chunks(conn: RawConn) -> None:
    """A chunked body sent in pieces, so the gateway must stream it."""
    while await conn.read_request() is not None:
        await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"alpha", b"beta", b"gamma"):
            await conn.send(b"%x\r\n%b\r\n" % (len(piece), piece))
            await asyncio.sleep(0.05)
        await conn.send(b"0\r\n\r\n")
    conn.close()


async def test_streamed_body_is_rechunked_and_the_connection_reused() -> None:
    async with gateway_with(slow_chunks) as gw, connect(gw) as client:
        for _ in range(2):
            await client.send(get("/public/s"))
            status, headers, body = await client.response()
            assert (status, headers["transfer-encoding"], body) == (
                200,
                "chunked",
                b"alphabetagamma",
            )


async def cut_short(conn: RawConn) -> None:
    await conn.read_request()
    await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    await asyncio.sleep(0.1)
    conn.close()


async def test_a_truncated_upstream_body_aborts_the_client_connection() -> None:
    async with gateway_with(cut_short) as gw, connect(gw) as client:
        await client.send(get("/public/t"))
        head = await client.reader.readuntil(b"\r\n\r\n")
        assert b"Content-Length: 100" in head
        rest = await asyncio.wait_for(client.reader.read(), 10)
        assert len(rest) < 100  # never looks complete


async def test_a_slow_head_is_408_and_closed() -> None:
    async with gateway_with(header_read_timeout=0.5) as gw, connect(gw) as client:
        await client.send(b"GET /public/a HTTP/1.1\r\nHost: x\r\n")  # never finished
        status, _, body = await client.response()
        assert (status, json.loads(body)["error"]["code"]) == (408, "request-timeout")
        assert await client.at_eof()


async def test_an_idle_pipelined_tail_after_a_fast_answer_is_still_timed() -> None:
    async with gateway_with(header_read_timeout=0.5) as gw, connect(gw) as client:
        await client.send(get("/public/a") + b"GET /public/b HTTP/1.1\r\n")
        assert (await client.response())[0] == 200
        assert (await client.response())[0] == 408
        assert await client.at_eof()


async def test_too_many_small_headers_are_431_as_on_the_aiohttp_path() -> None:
    async with gateway_with() as gw, connect(gw) as client:
        many = [f"X-{i}: v" for i in range(150)]  # a small head, over `limits.max_headers`
        await client.send(get("/public/a", *many))
        status, _, body = await client.response()
        assert (status, json.loads(body)["error"]["code"]) == (431, "headers-too-large")


async def test_forward_auth_questions_take_the_fast_path_with_the_same_answer() -> None:
    async with gateway_with() as gw:
        counted = await Handoffs(gw).start()
        ask = get("/.gateway/verify", "X-Original-URI: /app/x", "Accept: application/json")
        async with connect(gw) as first:
            await first.send(ask)
            fast_answer = await first.response()
            assert await counted.since() == {}
        async with connect(gw) as slow:
            await slow.send(get("/.gateway/healthz") + ask)
            await slow.response()
            slow_answer = await slow.response()
        async with connect(gw) as other:  # another method goes the aiohttp way, as before
            await other.send(get("/.gateway/verify", method="DELETE"))
            assert (await other.response())[0] == 404
        assert await counted.since() == {"gateway-endpoint": 2}
    assert fast_answer[0] == slow_answer[0] == 403  # the test client is no trusted proxy
    assert json.loads(fast_answer[2]) == json.loads(slow_answer[2])


def server_banner_upstream(banner: bytes) -> Handler:
    """An upstream that names itself in a `Server` header of its own."""

    async def handle(conn: RawConn) -> None:
        while await conn.read_request() is not None:
            await conn.send(
                b"HTTP/1.1 200 OK\r\nServer: %b\r\nContent-Length: 2\r\n\r\nok" % banner
            )
        conn.close()

    return handle


async def test_no_answer_carries_aiohttps_version_banner() -> None:
    async with gateway_with() as gw:
        counted = await Handoffs(gw).start()
        answers = []
        async with connect(gw) as client:  # fast path, then handed off, then aiohttp's
            await client.send(get("/public/a") + get("/.gateway/healthz") + get("/public/b"))
            answers += [await client.response() for _ in range(3)]
        async with connect(gw) as client:  # an unparsable head: the low-level error answer
            await client.send(get("/public/c", "Bad Header Line"))
            answers.append(await client.response())
        assert [a[0] for a in answers] == [200, 200, 200, 400]
        assert await counted.since() == {"gateway-endpoint": 1, "malformed": 1}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{gw.metrics_port}/metrics") as metrics,
        ):
            answers.append(
                (metrics.status, {k.lower(): v for k, v in metrics.headers.items()}, b"")
            )
    assert all("server" not in headers for _, headers, _ in answers), answers


async def test_an_upstreams_own_server_header_passes_on_both_paths() -> None:
    banner = SERVER_SOFTWARE.encode()  # even the very text aiohttp would add
    async with gateway_with(server_banner_upstream(banner)) as gw, connect(gw) as client:
        await client.send(get("/public/a") + get("/.gateway/healthz") + get("/public/b"))
        fast_answer, _, slow_answer = [await client.response() for _ in range(3)]
    assert fast_answer[1]["server"] == slow_answer[1]["server"] == SERVER_SOFTWARE


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (get("/public/a", "User-Agent: a", "User-Agent: b"), "repeated-header"),
        (get("/public/%61"), "unusual-path"),
        (get("/public//a"), "unusual-path"),
        (get("/.gateway/healthz"), "gateway-endpoint"),
        (b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", "body"),
        (get("/public/a", "Connection: Upgrade", "Upgrade: websocket"), "upgrade"),
        (get("/public/a", *[f"X-{i}: v" for i in range(150)]), "many-headers"),
    ],
)
async def test_each_hand_off_is_counted_with_its_reason(request_bytes: bytes, reason: str) -> None:
    async with gateway_with() as gw:
        counted = await Handoffs(gw).start()
        async with connect(gw) as client:
            await client.send(request_bytes)
            await client.response()
        assert await counted.since() == {reason: 1}
