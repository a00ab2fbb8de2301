"""A real aiohttp echo upstream for end-to-end tests of the reverse proxy.

Start it with ``async with run_echo_upstream() as up:`` and point the gateway at ``up.url``.
Every request is summarised into ``up.requests`` (in arrival order), so a test can assert what
the proxy actually forwarded.

Endpoints (see the handlers for details):

- ``* /echo/{tail}`` and catch-all ``* /{tail}``: JSON description of the request
- ``POST /upload``: ``{"bytes": n, "sha256": hex}`` of the streamed body
- ``GET /download/{n}``: ``n`` deterministic bytes, chunked (no Content-Length)
- ``GET /download-cl/{n}``: the same bytes with a Content-Length
- ``GET /slow/{seconds}``: answers after sleeping
- ``GET /status/{code}``: that status, small body (none for 204/304)
- ``GET /reset``: aborts the TCP connection without a response
- ``GET /hop``: a response carrying hop-by-hop headers
- ``GET /ws``: WebSocket echo; first message is ``{"headers": [...]}``
- ``GET|HEAD /head-test``: fixed body with Content-Length
- ``GET /sse``: three ``text/event-stream`` events written separately
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

__all__ = [
    "DOWNLOAD_BLOCK",
    "HEAD_TEST_BODY",
    "REQUESTS_KEY",
    "SSE_EVENTS",
    "EchoUpstream",
    "build_echo_app",
    "download_bytes",
    "expected_download_sha256",
    "run_echo_upstream",
]

#: The 64 KiB block that ``/download/{n}`` repeats (and truncates) to produce ``n`` bytes.
DOWNLOAD_BLOCK: bytes = bytes(range(256)) * 256
HEAD_TEST_BODY: bytes = b"head-test body: 31 bytes long!\n"
SSE_EVENTS: tuple[bytes, ...] = tuple(f"id: {i}\ndata: event {i}\n\n".encode() for i in range(3))
MAX_SLOW_SECONDS = 120.0

REQUESTS_KEY: web.AppKey[list[dict[str, Any]]] = web.AppKey("echo_requests", list)
_RECORD: web.RequestKey[dict[str, Any]] = web.RequestKey("gw_echo_record", dict)


def download_bytes(n: int) -> bytes:
    """Return the exact ``n`` bytes that ``/download/{n}`` sends (for small ``n``)."""
    whole, rest = divmod(n, len(DOWNLOAD_BLOCK))
    return DOWNLOAD_BLOCK * whole + DOWNLOAD_BLOCK[:rest]


def expected_download_sha256(n: int) -> str:
    """Hex SHA-256 of the ``n`` bytes served by ``/download/{n}`` and ``/download-cl/{n}``."""
    digest = hashlib.sha256()
    whole, rest = divmod(n, len(DOWNLOAD_BLOCK))
    for _ in range(whole):
        digest.update(DOWNLOAD_BLOCK)
    digest.update(DOWNLOAD_BLOCK[:rest])
    return digest.hexdigest()


def _headers_list(request: web.BaseRequest) -> list[list[str]]:
    return [[name, value] for name, value in request.headers.items()]


def _raw_path(request: web.BaseRequest) -> str:
    return request.raw_path.partition("?")[0]


def _raw_query(request: web.BaseRequest) -> str:
    """The query string exactly as sent (``request.query_string`` is percent-decoded)."""
    return request.raw_path.partition("?")[2]


def _http_version(request: web.BaseRequest) -> str:
    return f"{request.version.major}.{request.version.minor}"


@web.middleware
async def _record_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    record: dict[str, Any] = {
        "method": request.method,
        "path": _raw_path(request),
        "query_string": _raw_query(request),
        "headers": _headers_list(request),
        "http_version": _http_version(request),
        "body_len": None,
        "body_sha256": None,
    }
    request[_RECORD] = record
    request.app[REQUESTS_KEY].append(record)
    return await handler(request)


async def _consume_body(request: web.Request) -> tuple[int, str]:
    """Read the request body as a stream, hashing incrementally; never buffer it whole."""
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        digest.update(chunk)
    record = request[_RECORD]
    record["body_len"] = size
    record["body_sha256"] = digest.hexdigest()
    return size, digest.hexdigest()


async def _echo(request: web.Request) -> web.Response:
    size, sha = await _consume_body(request)
    return web.json_response(
        {
            "method": request.method,
            "path": _raw_path(request),
            "query_string": _raw_query(request),
            "headers": _headers_list(request),
            "body_len": size,
            "body_sha256": sha,
            "http_version": _http_version(request),
        }
    )


async def _upload(request: web.Request) -> web.Response:
    size, sha = await _consume_body(request)
    return web.json_response({"bytes": size, "sha256": sha})


def _int_param(request: web.Request, name: str) -> int:
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None
    if value < 0:
        raise web.HTTPBadRequest(text=f"{name} must not be negative")
    return value


async def _write_download(resp: web.StreamResponse, n: int) -> None:
    whole, rest = divmod(n, len(DOWNLOAD_BLOCK))
    for _ in range(whole):
        await resp.write(DOWNLOAD_BLOCK)
    if rest:
        await resp.write(DOWNLOAD_BLOCK[:rest])
    await resp.write_eof()


async def _download_chunked(request: web.Request) -> web.StreamResponse:
    n = _int_param(request, "n")
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    if request.version >= (1, 1):
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    await _write_download(resp, n)
    return resp


async def _download_content_length(request: web.Request) -> web.StreamResponse:
    n = _int_param(request, "n")
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    resp.content_length = n
    await resp.prepare(request)
    await _write_download(resp, n)
    return resp


async def _slow(request: web.Request) -> web.Response:
    try:
        seconds = float(request.match_info["seconds"])
    except ValueError:
        raise web.HTTPBadRequest(text="seconds must be a number") from None
    if not 0 <= seconds <= MAX_SLOW_SECONDS:
        raise web.HTTPBadRequest(text=f"seconds must be within 0..{MAX_SLOW_SECONDS}")
    # The delay is the point of this endpoint: it lets tests hit upstream timeouts.
    await asyncio.sleep(seconds)
    return web.json_response({"slept": seconds})


async def _status(request: web.Request) -> web.Response:
    code = _int_param(request, "code")
    if not 200 <= code <= 599:
        raise web.HTTPBadRequest(text="code must be within 200..599")
    if code in (204, 304):
        return web.Response(status=code)
    return web.Response(status=code, text=f"status {code}\n")


async def _reset(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        transport.abort()
    # Writing this fails with a ConnectionError, which aiohttp swallows: nothing is sent.
    return web.Response(status=500, text="should never be seen")


async def _hop(request: web.Request) -> web.Response:
    resp = web.Response(
        text="hop\n",
        headers={
            "Connection": "close, X-Secret-Hop",
            "X-Secret-Hop": "1",
            "Keep-Alive": "timeout=5",
            "Proxy-Connection": "keep-alive",
            "X-End-To-End": "kept",
        },
    )
    # We announced Connection: close, so really close after this response.
    resp.force_close()
    return resp


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(autoclose=False)
    await ws.prepare(request)
    await ws.send_str(json.dumps({"headers": _headers_list(request)}))
    while True:
        msg = await ws.receive()
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
        elif msg.type is WSMsgType.CLOSE:
            code = msg.data
            # 1005 (no status) and 1006 (abnormal) must never be sent on the wire.
            if not isinstance(code, int) or code in (1005, 1006) or code < 1000:
                code = WSCloseCode.OK
            await ws.close(code=code, message=(msg.extra or "").encode()[:120])
            break
        else:  # CLOSING, CLOSED, ERROR
            break
    return ws


async def _head_test(request: web.Request) -> web.Response:
    # aiohttp answers HEAD with the same headers (including Content-Length) and no body.
    return web.Response(body=HEAD_TEST_BODY, content_type="text/plain")


async def _sse(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    for event in SSE_EVENTS:
        await resp.write(event)
        await asyncio.sleep(0)
    await resp.write_eof()
    return resp


def build_echo_app() -> web.Application:
    """Build the echo upstream application; recorded requests go to ``app[REQUESTS_KEY]``."""
    app = web.Application(middlewares=[_record_middleware], client_max_size=1024**4)
    app[REQUESTS_KEY] = []
    app.router.add_post("/upload", _upload)
    app.router.add_get("/download/{n}", _download_chunked)
    app.router.add_get("/download-cl/{n}", _download_content_length)
    app.router.add_get("/slow/{seconds}", _slow)
    app.router.add_get("/status/{code}", _status)
    app.router.add_get("/reset", _reset)
    app.router.add_get("/hop", _hop)
    app.router.add_get("/ws", _websocket)
    app.router.add_get("/head-test", _head_test)
    app.router.add_get("/sse", _sse)
    app.router.add_route("*", "/echo/{tail:.*}", _echo)
    # Anything else (including other methods on the paths above) is echoed too.
    app.router.add_route("*", "/{tail:.*}", _echo)
    return app


@dataclass
class EchoUpstream:
    """A running echo upstream."""

    host: str
    port: int
    app: web.Application
    runner: web.AppRunner = field(repr=False)

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Summaries of every request received so far, oldest first."""
        return self.app[REQUESTS_KEY]


@contextlib.asynccontextmanager
async def run_echo_upstream(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[EchoUpstream]:
    """Serve :func:`build_echo_app` on ``host:port`` (0 = any free port) for the block."""
    app = build_echo_app()
    # handler_cancellation: when a client (the proxy) gives up on /slow, stop the handler too,
    # so shutdown does not wait for sleeping handlers.
    runner = web.AppRunner(app, shutdown_timeout=2.0, handler_cancellation=True)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        yield EchoUpstream(host=host, port=bound_port, app=app, runner=runner)
    finally:
        await runner.cleanup()
