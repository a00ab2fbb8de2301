"""The test support code works against real services and real sockets."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from tests.support import services
from tests.support.net import (
    free_port,
    parse_headers,
    parse_response,
    parse_status,
    raw_request,
    wait_for_http,
    wait_for_port,
)
from tests.support.services import ServerHandle
from tests.support.upstream import (
    HEAD_TEST_BODY,
    SSE_EVENTS,
    EchoUpstream,
    download_bytes,
    expected_download_sha256,
    run_echo_upstream,
)

PrivateServer = Callable[[], AbstractAsyncContextManager[ServerHandle]]


def _lower(headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers:
        out.setdefault(name.lower(), []).append(value)
    return out


# ---------------------------------------------------------------------------- PostgreSQL


async def test_postgres_url_is_a_usable_per_run_database(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        name = await conn.fetchval("SELECT current_database()")
        assert name.startswith("gw_test_")
        await conn.execute("CREATE TABLE support_probe (id int PRIMARY KEY, note text)")
        try:
            await conn.execute("INSERT INTO support_probe VALUES (1, 'one'), (2, 'two')")
            rows = await conn.fetch("SELECT id, note FROM support_probe ORDER BY id")
            assert [tuple(r) for r in rows] == [(1, "one"), (2, "two")]
        finally:
            await conn.execute("DROP TABLE support_probe")
    finally:
        await conn.close()


def test_with_database_and_redact_url() -> None:
    url = "postgresql://app:s3cret@db.example:5433/admin?sslmode=disable"
    assert services.with_database(url, "gw_test_ab") == (
        "postgresql://app:s3cret@db.example:5433/gw_test_ab?sslmode=disable"
    )
    assert "s3cret" not in services.redact_url(url)
    assert services.redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


@pytest.mark.timeout(120)
async def test_private_postgres_stop_and_start(private_postgres: PrivateServer) -> None:
    async with private_postgres() as url:
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()

        await url.stop()
        assert not url.running
        with pytest.raises(ConnectionRefusedError):
            await asyncpg.connect(url, timeout=5)

        await url.start()
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT current_user") == "postgres"
        finally:
            await conn.close()
        datadir = url.server.base  # type: ignore[union-attr]
    assert not datadir.exists()


# ---------------------------------------------------------------------------- Redis


async def test_redis_prefix_is_usable(redis_url: str, redis_prefix: str) -> None:
    assert redis_prefix.startswith("gwtest:")
    assert redis_prefix.endswith(":")
    client = aioredis.from_url(redis_url)
    try:
        await client.set(redis_prefix + "probe", b"hello", ex=600)
        assert await client.get(redis_prefix + "probe") == b"hello"
        await client.unlink(redis_prefix + "probe")
    finally:
        await client.aclose()


async def test_delete_prefix_deletes_exactly_the_prefix(redis_url: str, redis_prefix: str) -> None:
    doomed = redis_prefix + "cleanup*:"  # the glob character must be matched literally
    lookalike = redis_prefix + "cleanupX:keep"
    sibling = redis_prefix + "keep"
    client = aioredis.from_url(redis_url)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for i in range(1234):  # more than one SCAN/UNLINK batch
                pipe.set(f"{doomed}{i}", i, ex=600)
            pipe.set(lookalike, 1, ex=600)
            pipe.set(sibling, 1, ex=600)
            await pipe.execute()

        assert await services.delete_prefix(redis_url, doomed) == 1234

        assert [k async for k in client.scan_iter(match=redis_prefix + "cleanup\\**")] == []
        assert await client.exists(lookalike, sibling) == 2
        assert await services.delete_prefix(redis_url, doomed) == 0
    finally:
        await client.unlink(lookalike, sibling)
        await client.aclose()


async def test_delete_prefix_refuses_empty_prefix(redis_url: str) -> None:
    with pytest.raises(ValueError, match="empty prefix"):
        await services.delete_prefix(redis_url, "")


def test_redis_key_prefix_removes_its_keys_at_exit(redis_url: str, redis_prefix: str) -> None:
    async def write(prefix: str) -> None:
        client = aioredis.from_url(redis_url)
        try:
            await client.set(prefix + "a", 1, ex=600)
            await client.hset(prefix + "b", mapping={"x": 1})
            await client.expire(prefix + "b", 600)
        finally:
            await client.aclose()

    async def count(prefix: str) -> int:
        client = aioredis.from_url(redis_url)
        try:
            return len([k async for k in client.scan_iter(match=prefix + "*")])
        finally:
            await client.aclose()

    with services.redis_key_prefix(redis_url, parent=redis_prefix) as nested:
        assert nested.startswith(redis_prefix)
        assert nested != redis_prefix
        services.run_sync(write(nested))
        assert services.run_sync(count(nested)) == 2
    assert services.run_sync(count(nested)) == 0


async def test_private_redis_stop_and_start(private_redis: PrivateServer) -> None:
    async with private_redis() as url:
        assert url.startswith("redis://127.0.0.1:")
        client = aioredis.from_url(url)
        try:
            await client.set("k", "v")
            assert await client.get("k") == b"v"
        finally:
            await client.aclose()

        await url.stop()
        assert not url.running
        client = aioredis.from_url(url, socket_connect_timeout=1)
        try:
            with pytest.raises(redis.exceptions.ConnectionError):
                await client.ping()
        finally:
            await client.aclose()

        await url.start()
        client = aioredis.from_url(url)
        try:
            assert await client.ping()
            assert await client.get("k") is None  # no persistence: a fresh server
        finally:
            await client.aclose()
        port = url.port
    with pytest.raises(TimeoutError):
        await wait_for_port("127.0.0.1", port, timeout=0.2)


def test_service_unavailable_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(services.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="SERVICE UNAVAILABLE: nope"):
        services.service_unavailable("nope")
    services.UNAVAILABLE.remove("SERVICE UNAVAILABLE: nope")
    monkeypatch.setenv(services.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="nope"):
        services.service_unavailable("nope")


def test_find_pg_bindir_has_the_server_binaries() -> None:
    bindir = services.find_pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries installed")
    assert (bindir / "initdb").is_file()
    assert (bindir / "pg_ctl").is_file()


# ---------------------------------------------------------------------------- net helpers


async def test_wait_for_port_and_http(echo_upstream: EchoUpstream) -> None:
    await wait_for_port("127.0.0.1", echo_upstream.port, timeout=2)
    assert await wait_for_http(echo_upstream.url + "/status/503", timeout=2) == 503
    with pytest.raises(TimeoutError, match="nothing accepted"):
        await wait_for_port("127.0.0.1", free_port(), timeout=0.2)
    with pytest.raises(TimeoutError, match="no HTTP response"):
        await wait_for_http(f"http://127.0.0.1:{free_port()}/", timeout=0.2)


def test_parse_helpers() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\nX-A: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert parse_status(raw) == 200
    assert parse_headers(raw)[:2] == [("X-A", "1"), ("X-A", "2")]
    assert parse_response(raw)[2] == b"abcde"
    assert parse_response(b"HTTP/1.0 404 Not Found\r\nContent-Length: 2\r\n\r\nnoXX")[2] == b"no"
    with pytest.raises(ValueError, match="status line"):
        parse_status(b"garbage")
    with pytest.raises(ValueError, match="status line"):
        parse_status(b"")


# ---------------------------------------------------------------------------- echo upstream


async def test_echo_reports_raw_request(echo_upstream: EchoUpstream) -> None:
    body = b"hello body"
    request = (
        b"PUT /echo/a%2Fb/c?x=1&x=2&y=%20 HTTP/1.1\r\n"
        b"Host: upstream.test\r\n"
        b"X-Dup: one\r\n"
        b"X-Other: mid\r\n"
        b"X-Dup: two\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n" + body
    )
    raw = await raw_request("127.0.0.1", echo_upstream.port, request)
    status, _, payload = parse_response(raw)
    assert status == 200
    data = json.loads(payload)
    assert data["method"] == "PUT"
    assert data["path"] == "/echo/a%2Fb/c"
    assert data["query_string"] == "x=1&x=2&y=%20"
    assert data["http_version"] == "1.1"
    assert data["body_len"] == len(body)
    assert data["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert data["headers"] == [
        ["Host", "upstream.test"],
        ["X-Dup", "one"],
        ["X-Other", "mid"],
        ["X-Dup", "two"],
        ["Content-Length", str(len(body))],
        ["Connection", "close"],
    ]
    [record] = echo_upstream.requests
    assert record == data


async def test_echo_catch_all_and_http10(echo_upstream: EchoUpstream) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.patch(echo_upstream.url + "/anything/else?q", data=b"xyz") as resp,
    ):
        assert resp.status == 200
        data = await resp.json()
    assert (data["method"], data["path"], data["query_string"]) == ("PATCH", "/anything/else", "q")
    assert data["body_len"] == 3

    # Other methods on specific endpoints fall through to the echo, too.
    raw = await raw_request(
        "127.0.0.1", echo_upstream.port, b"DELETE /download/5 HTTP/1.0\r\nHost: h\r\n\r\n"
    )
    data = json.loads(parse_response(raw)[2])
    assert (data["method"], data["path"], data["http_version"]) == ("DELETE", "/download/5", "1.0")
    assert [r["method"] for r in echo_upstream.requests] == ["PATCH", "DELETE"]


async def test_upload_streams_and_hashes(echo_upstream: EchoUpstream) -> None:
    chunk = bytes(range(256)) * 1024
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(20):
            digest.update(chunk)
            yield chunk

    async with (
        aiohttp.ClientSession() as session,
        session.post(echo_upstream.url + "/upload", data=body()) as resp,
    ):
        assert resp.status == 200
        data = await resp.json()
    assert data == {"bytes": 20 * len(chunk), "sha256": digest.hexdigest()}
    assert echo_upstream.requests[-1]["body_len"] == 20 * len(chunk)


@pytest.mark.parametrize("n", [0, 1, 65536, 3 * 65536 + 123])
async def test_download_chunked_and_with_length(echo_upstream: EchoUpstream, n: int) -> None:
    async with aiohttp.ClientSession() as session:
        for path, chunked in (("/download/", True), ("/download-cl/", False)):
            async with session.get(f"{echo_upstream.url}{path}{n}") as resp:
                assert resp.status == 200
                digest = hashlib.sha256()
                size = 0
                async for piece in resp.content.iter_any():
                    size += len(piece)
                    digest.update(piece)
                if chunked:
                    assert "Content-Length" not in resp.headers
                    assert resp.headers["Transfer-Encoding"] == "chunked"
                else:
                    assert resp.headers["Content-Length"] == str(n)
            assert size == n
            assert digest.hexdigest() == expected_download_sha256(n)


async def test_download_bytes_on_the_wire(echo_upstream: EchoUpstream) -> None:
    n = 70000
    assert expected_download_sha256(n) == hashlib.sha256(download_bytes(n)).hexdigest()
    raw = await raw_request(
        "127.0.0.1",
        echo_upstream.port,
        f"GET /download/{n} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode(),
    )
    status, headers, body = parse_response(raw)
    assert status == 200
    assert _lower(headers)["transfer-encoding"] == ["chunked"]
    assert body == download_bytes(n)


@pytest.mark.parametrize("code", [200, 201, 404, 418, 502, 503])
async def test_status_with_body(echo_upstream: EchoUpstream, code: int) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{echo_upstream.url}/status/{code}") as resp,
    ):
        assert resp.status == code
        assert await resp.text() == f"status {code}\n"


@pytest.mark.parametrize("code", [204, 304])
async def test_status_without_body(echo_upstream: EchoUpstream, code: int) -> None:
    raw = await raw_request(
        "127.0.0.1",
        echo_upstream.port,
        f"GET /status/{code} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode(),
    )
    assert parse_status(raw) == code
    assert raw.endswith(b"\r\n\r\n")
    assert "content-length" not in _lower(parse_headers(raw))


async def test_reset_aborts_without_response(echo_upstream: EchoUpstream) -> None:
    raw = await raw_request(
        "127.0.0.1", echo_upstream.port, b"GET /reset HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    assert raw == b""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(echo_upstream.url + "/reset"):
                pass


async def test_hop_headers_really_sent(echo_upstream: EchoUpstream) -> None:
    raw = await raw_request(
        "127.0.0.1", echo_upstream.port, b"GET /hop HTTP/1.1\r\nHost: h\r\n\r\n"
    )  # no Connection: close from us; the server closes because it said so
    status, headers, body = parse_response(raw)
    assert status == 200
    lowered = _lower(headers)
    assert lowered["connection"] == ["close, X-Secret-Hop"]
    assert lowered["x-secret-hop"] == ["1"]
    assert lowered["keep-alive"] == ["timeout=5"]
    assert lowered["proxy-connection"] == ["keep-alive"]
    assert lowered["x-end-to-end"] == ["kept"]
    assert body == b"hop\n"


async def test_head_has_length_but_no_body(echo_upstream: EchoUpstream) -> None:
    raw = await raw_request(
        "127.0.0.1",
        echo_upstream.port,
        b"HEAD /head-test HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    assert parse_status(raw) == 200
    assert _lower(parse_headers(raw))["content-length"] == [str(len(HEAD_TEST_BODY))]
    assert raw.endswith(b"\r\n\r\n")
    async with (
        aiohttp.ClientSession() as session,
        session.get(echo_upstream.url + "/head-test") as resp,
    ):
        assert await resp.read() == HEAD_TEST_BODY


async def test_sse_streams_three_events(echo_upstream: EchoUpstream) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(echo_upstream.url + "/sse") as resp,
    ):
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert await resp.read() == b"".join(SSE_EVENTS)


async def test_slow_answers_after_the_delay_and_shuts_down_cleanly() -> None:
    async with run_echo_upstream() as upstream, aiohttp.ClientSession() as session:
        async with session.get(upstream.url + "/slow/0.01") as resp:
            assert await resp.json() == {"slept": 0.01}
        with pytest.raises(TimeoutError):
            async with session.get(
                upstream.url + "/slow/30", timeout=aiohttp.ClientTimeout(total=0.2)
            ):
                pass
    # Leaving the block must not wait for the abandoned 30 s handler (the test timeout would).


async def test_websocket_echo_and_close_code(echo_upstream: EchoUpstream) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(echo_upstream.ws_url, headers={"X-Probe": "ws-1"}) as ws,
    ):
        first = await ws.receive_json()
        assert ["X-Probe", "ws-1"] in first["headers"]
        await ws.send_str("hello")
        assert await ws.receive_str() == "hello"
        await ws.send_bytes(b"\x00\x01binary")
        assert await ws.receive_bytes() == b"\x00\x01binary"
        await ws.close(code=4001, message=b"bye")
        assert ws.close_code == 4001
