"""The reverse proxy core, against the real `gateway serve` process and a real upstream."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator

import aiohttp
import psutil
import pytest

from tests.support.gateway_proc import GatewayProcess
from tests.support.net import parse_response, parse_status, raw_request
from tests.support.upstream import HEAD_TEST_BODY, EchoUpstream, expected_download_sha256

pytestmark = pytest.mark.e2e


def upstream_headers(body: dict[str, object]) -> dict[str, str]:
    pairs = body["headers"]
    assert isinstance(pairs, list)
    return {k.lower(): v for k, v in pairs}


async def test_public_path_is_proxied_with_forwarding_headers(gateway: GatewayProcess) -> None:
    resp = await raw_request(
        gateway.host,
        gateway.port,
        b"GET /public/hello?x=1&y=%%2F HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"X-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n" % gateway.port,
    )
    status, _, raw_body = parse_response(resp)
    assert status == 200
    body = json.loads(raw_body)
    assert body["path"] == "/public/hello"
    assert body["query_string"] == "x=1&y=%2F"
    seen = upstream_headers(body)
    assert seen["x-forwarded-for"] == "127.0.0.1"  # the untrusted client's claim is dropped
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == f"127.0.0.1:{gateway.port}"
    assert "x-request-id" in seen


async def test_path_is_normalized_before_routing_and_forwarding(gateway: GatewayProcess) -> None:
    resp = await raw_request(
        gateway.host,
        gateway.port,
        b"GET /public/a/..//b/./c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    status, _, body = parse_response(resp)
    assert status == 200
    assert json.loads(body)["path"] == "/public/b/c"


async def test_dot_segments_cannot_climb_out_of_a_public_prefix(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http:
        for target in ("/public/../private", "/public/%2e%2e/private"):
            resp = await raw_request(
                gateway.host,
                gateway.port,
                f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
            )
            assert parse_status(resp) == 401, target
        async with http.get(f"{gateway.url}/public/a%2fb") as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "bad-path"


async def test_protected_route_fails_closed(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}/private") as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "unauthenticated"
        async with http.get(
            f"{gateway.url}/private", headers={"Accept": "text/html"}, allow_redirects=False
        ) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == "/.gateway/login?rd=%2Fprivate"


async def test_upload_8mib_streams_with_flat_memory(gateway: GatewayProcess) -> None:
    size = 8 * 1024 * 1024
    block = bytes(range(256)) * 256
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // len(block)):
            digest.update(block)
            yield block

    proc = psutil.Process(gateway.proc.pid)
    before = proc.memory_info().rss
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway.url}/upload", data=body()) as resp,
    ):
        assert resp.status == 200
        result = await resp.json()
    assert result == {"bytes": size, "sha256": digest.hexdigest()}
    assert proc.memory_info().rss - before < size, "the upload was buffered"


async def test_download_64mib_streams_with_flat_memory(gateway: GatewayProcess) -> None:
    size = 64 * 1024 * 1024
    proc = psutil.Process(gateway.proc.pid)
    before = proc.memory_info().rss
    peak = before
    digest = hashlib.sha256()
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/download/{size}") as r:
        assert r.status == 200
        assert "Content-Length" not in r.headers
        async for chunk in r.content.iter_chunked(1 << 20):
            digest.update(chunk)
            peak = max(peak, proc.memory_info().rss)
    assert digest.hexdigest() == expected_download_sha256(size)
    assert peak - before < 24 * 1024 * 1024, f"gateway grew by {(peak - before) >> 20} MiB"


async def test_content_length_download_keeps_its_length(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/download-cl/100000") as r:
        assert r.headers["Content-Length"] == "100000"
        assert hashlib.sha256(await r.read()).hexdigest() == expected_download_sha256(100000)


async def test_websocket_is_tunnelled(gateway: GatewayProcess) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{gateway.url}/ws", headers={"X-User-Id": "forged"}) as ws,
    ):
        first = json.loads((await ws.receive()).data)
        names = {k.lower() for k, _ in first["headers"]}
        assert "x-user-id" not in names
        await ws.send_str("hello")
        assert (await ws.receive()).data == "hello"
        await ws.send_bytes(b"\x00\x01")
        assert (await ws.receive()).data == b"\x00\x01"
        await ws.close()


async def test_protected_websocket_is_refused_before_upgrade(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{gateway.url}/private-ws")
        assert info.value.status == 401


async def test_h2c_upgrade_is_refused(gateway: GatewayProcess) -> None:
    resp = await raw_request(
        gateway.host,
        gateway.port,
        b"GET /public/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    )
    assert parse_status(resp) == 400


async def test_hop_by_hop_headers_are_removed_both_ways(gateway: GatewayProcess) -> None:
    resp = await raw_request(
        gateway.host,
        gateway.port,
        b"GET /public/x HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Drop-Me\r\n"
        b"X-Drop-Me: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: x\r\n"
        b"X-Keep-Me: 1\r\n\r\n",
        read_timeout=2.0,
    )
    status, _, body = parse_response(resp)
    assert status == 200
    seen = upstream_headers(json.loads(body))
    for name in ("x-drop-me", "keep-alive", "te", "proxy-connection"):
        assert name not in seen
    assert seen["x-keep-me"] == "1"
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/hop") as r:
        assert r.status == 200
        for name in ("X-Secret-Hop", "Keep-Alive", "Proxy-Connection"):
            assert name not in r.headers


async def test_upstream_down_is_502_json(tmp_path, echo_upstream: EchoUpstream) -> None:
    from tests.support.gateway_proc import base_config, run_gateway
    from tests.support.net import free_port

    config = base_config(f"http://127.0.0.1:{free_port()}", tmp_path)
    async with (
        run_gateway(tmp_path, config) as gw,
        aiohttp.ClientSession() as http,
        http.get(f"{gw.url}/public/x") as r,
    ):
        assert r.status == 502
        assert (await r.json())["error"]["code"] == "upstream-unreachable"


async def test_upstream_reset_is_502_and_gateway_keeps_serving(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}/reset") as r:
            assert r.status == 502
        async with http.get(f"{gateway.url}/public/still-here") as r:
            assert r.status == 200


async def test_slow_upstream_is_504_json(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/public/../slow/3") as r:
        assert r.status in (401, 504)  # /slow is not public: the chain refuses first
    gw_public_slow = f"{gateway.url}/status/200"
    async with aiohttp.ClientSession() as http, http.get(gw_public_slow) as r:
        assert r.status == 200


@pytest.mark.parametrize("status", [200, 204, 304, 404, 500])
async def test_statuses_pass_through(gateway: GatewayProcess, status: int) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/status/{status}") as r:
        assert r.status == status
        if status in (204, 304):
            assert await r.read() == b""


async def test_head_keeps_content_length_without_body(gateway: GatewayProcess) -> None:
    resp = await raw_request(
        gateway.host,
        gateway.port,
        b"HEAD /head-test HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    status, headers, body = parse_response(resp)
    assert status == 200
    assert body == b""
    assert dict((k.lower(), v) for k, v in headers).get("content-length") == str(
        len(HEAD_TEST_BODY)
    )


async def test_body_over_limit_is_413(gateway: GatewayProcess) -> None:
    big = 17 * 1024 * 1024
    resp = await raw_request(
        gateway.host,
        gateway.port,
        f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n\r\n".encode(),
    )
    assert parse_status(resp) == 413

    async def chunks() -> AsyncIterator[bytes]:
        block = b"x" * (1 << 20)
        for _ in range(18):
            yield block

    async with aiohttp.ClientSession() as http:
        try:
            async with http.post(f"{gateway.url}/upload", data=chunks()) as r:
                assert r.status == 413
        except aiohttp.ClientOSError:
            pass  # the gateway may close the connection while the client still sends
        async with http.get(f"{gateway.url}/public/x") as r:
            assert r.status == 200


async def test_head_over_limit_is_431(gateway: GatewayProcess) -> None:
    many = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 100) for i in range(90))
    resp = await raw_request(
        gateway.host, gateway.port, b"GET /public/x HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"
    )
    assert parse_status(resp) == 431
    one_huge = b"GET /public/x HTTP/1.1\r\nHost: x\r\nCookie: " + b"s" * 20000 + b"\r\n\r\n"
    resp = await raw_request(gateway.host, gateway.port, one_huge)
    assert parse_status(resp) == 431
    assert b"sssss" not in resp, "the error body must not echo request bytes"


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /public/x HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n",
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nabc\r\n0\r\n\r\n",
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ],
    ids=[
        "cl-and-te",
        "duplicate-cl-differing",
        "duplicate-cl-same",
        "obs-fold",
        "bad-chunk-size",
        "te-not-only-chunked",
        "duplicate-host",
    ],
)
async def test_malformed_framing_is_400_json(gateway: GatewayProcess, raw: bytes) -> None:
    resp = await raw_request(gateway.host, gateway.port, raw)
    status, _headers, body = parse_response(resp)
    assert status == 400
    assert json.loads(body)["error"]["code"] in ("bad-framing", "bad-request")
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/public/x") as r:
        assert r.status == 200


async def test_requests_to_the_gateway_namespace_are_never_proxied(
    gateway: GatewayProcess, echo_upstream: EchoUpstream
) -> None:
    before = len(echo_upstream.requests)
    resp = await raw_request(
        gateway.host,
        gateway.port,
        b"GET /public/../.gateway/secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert parse_status(resp) == 404
    assert len(echo_upstream.requests) == before


async def test_health_and_readiness(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}/.gateway/healthz") as r:
            assert r.status == 200
        async with http.get(f"{gateway.url}/.gateway/readyz") as r:
            assert r.status == 200
            assert (await r.json())["checks"]["database"] == "ok"
        async with http.get(f"http://127.0.0.1:{gateway.metrics_port}/metrics") as r:
            assert r.status == 200
        async with http.get(f"{gateway.url}/metrics") as r:
            assert r.status == 401  # never on the main listener: it is just a protected path


async def test_many_concurrent_requests_share_pooled_connections(
    gateway: GatewayProcess,
) -> None:
    async with aiohttp.ClientSession() as http:

        async def one(i: int) -> int:
            async with http.get(f"{gateway.url}/public/{i}") as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(one(i) for i in range(200)))
    assert set(statuses) == {200}
