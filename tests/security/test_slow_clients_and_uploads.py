"""Slow clients (header and body read deadlines) and upload content-type checks.

Slowloris (2009) and R.U.D.Y. slow-POST attacks hold connections open by trickling a request;
aiohttp's own idle timer only starts after a response, so a head sent a byte at a time could
hold a connection for its keep-alive timeout (an hour by default in aiohttp 3.14).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
import pytest_asyncio
from multidict import CIMultiDict

from gateway.config.schema import Upstream
from gateway.pipeline.reasons import Reason
from gateway.pipeline.scope import RequestScope
from gateway.pipeline.stages.upload import CheckUploadType, content_types_by_route
from gateway.proxy.routes import build_route
from tests.e2e.auth_helpers import AuthEnv
from tests.security.harness import head, requests_with, send
from tests.support.gateway_proc import base_config, run_gateway
from tests.support.upstream import run_echo_upstream

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AuthEnv]:
    workdir = tmp_path_factory.mktemp("slow")
    async with run_echo_upstream() as upstream:
        config = base_config(upstream.url, workdir)
        config["rate_limits"] = {"defaults": False}
        config["limits"] = {
            "header_read_timeout": HEADER_TIMEOUT,
            "body_read_timeout": BODY_TIMEOUT,
        }
        config["upstreams"].append(
            {
                "name": "uploads",
                "url": upstream.url,
                "match": {"path_prefix": "/files"},
                "public_paths": ["/files/*"],
                "allowed_content_types": ["image/png", "application/json", "text/*"],
            }
        )
        async with run_gateway(workdir, config) as gw:
            yield AuthEnv(gw, upstream)


async def _open(env: AuthEnv) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(env.gw.host, env.gw.port)


async def _trickle(writer: asyncio.StreamWriter, data: bytes, interval: float) -> None:
    """Sends `data` a byte at a time, `interval` seconds apart, until the peer closes."""
    for byte in data:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(interval)


async def _closed_within(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trickle: Any, limit: float
) -> tuple[float, bytes]:
    started = time.monotonic()
    task = asyncio.ensure_future(trickle)
    try:
        data = await asyncio.wait_for(reader.read(), limit)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await task
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return time.monotonic() - started, data


async def test_a_head_sent_byte_by_byte_is_cut_off(env: AuthEnv) -> None:
    """Slowloris: the head must be complete within header_read_timeout of its first byte;
    the client gets 408 JSON and the connection is closed."""
    marker = uuid.uuid4().hex
    reader, writer = await _open(env)
    data = f"GET /public/{marker} HTTP/1.1\r\nHost: x\r\n".encode() + b"X-Slow: " + b"a" * 500
    elapsed, answer = await _closed_within(
        reader, writer, _trickle(writer, data, 0.05), HEADER_TIMEOUT + 5
    )
    assert elapsed >= HEADER_TIMEOUT - 0.1
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request-timeout" in answer
    assert not requests_with(env, marker)


async def test_a_slow_head_on_a_kept_alive_connection_is_cut_off(env: AuthEnv) -> None:
    """The deadline applies to every request on a connection, not only the first."""
    reader, writer = await _open(env)
    writer.write(head(env, "/public/first").replace(b"Connection: close\r\n", b""))
    await writer.drain()
    first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert first.startswith(b"HTTP/1.1 200")
    data = b"GET /public/second HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"b" * 500
    elapsed, _ = await _closed_within(
        reader, writer, _trickle(writer, data, 0.05), HEADER_TIMEOUT + 5
    )
    assert elapsed < HEADER_TIMEOUT + 4


async def test_a_body_sent_byte_by_byte_is_cut_off(env: AuthEnv) -> None:
    """R.U.D.Y. / slow POST: a declared body must arrive within body_read_timeout; the
    request is abandoned (the upstream never sees a complete body) and the socket closed."""
    marker = uuid.uuid4().hex
    reader, writer = await _open(env)
    writer.write(
        f"POST /public/{marker} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode()
    )
    await writer.drain()
    elapsed, _ = await _closed_within(
        reader, writer, _trickle(writer, b"z" * 1000, 0.05), BODY_TIMEOUT + 5
    )
    assert BODY_TIMEOUT - 0.1 <= elapsed < BODY_TIMEOUT + 4
    assert all(r["body_len"] != 1000 for r in requests_with(env, marker))


async def test_a_prompt_client_is_never_cut_off(env: AuthEnv) -> None:
    """The deadlines are per head and per body, not per connection: a keep-alive connection
    used for longer than both, with prompt requests, keeps working."""
    reader, writer = await _open(env)
    try:
        deadline = time.monotonic() + HEADER_TIMEOUT + BODY_TIMEOUT + 0.5
        count = 0
        while time.monotonic() < deadline:
            writer.write(
                f"POST /public/p{count} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok".encode()
            )
            await writer.drain()
            resp = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert resp.startswith(b"HTTP/1.1 200")
            length = int(resp.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            count += 1
            await asyncio.sleep(0.3)
    finally:
        writer.close()


# ---------------------------------------------------------------------------------------
# Uploads: allowed content types per route (415 otherwise)
# ---------------------------------------------------------------------------------------


def _scope(route_upstream: Upstream, headers: dict[str, str] | list[tuple[str, str]]) -> Any:
    pairs = list(headers.items()) if isinstance(headers, dict) else headers
    multi: CIMultiDict[str] = CIMultiDict(pairs)
    request = SimpleNamespace(
        headers=multi,
        body_exists="Content-Length" in multi or "Transfer-Encoding" in multi,
    )
    return cast(Any, SimpleNamespace(route=build_route(route_upstream), request=request))


UPLOADS = Upstream(
    name="uploads",
    url="http://127.0.0.1:1",
    allowed_content_types=("image/png", "application/json", "text/*"),
)


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({"Content-Type": "image/png", "Content-Length": "3"}, False),
        ({"Content-Type": "IMAGE/PNG; foo=bar", "Content-Length": "3"}, False),
        ({"Content-Type": "text/csv", "Content-Length": "3"}, False),
        ({"Content-Type": "application/json; charset=utf-8", "Content-Length": "3"}, False),
        ({"Content-Length": "0"}, True),  # a body without a declared type
        ({"Content-Type": "image/svg+xml", "Content-Length": "3"}, True),  # stored XSS vector
        ({"Content-Type": "application/x-php", "Content-Length": "3"}, True),
        ({"Content-Type": "image/pngx", "Content-Length": "3"}, True),  # prefix match
        ({"Content-Type": "image/png/x", "Content-Length": "3"}, True),
        ({"Content-Type": "image", "Content-Length": "3"}, True),
        ({"Content-Type": "text /plain", "Content-Length": "3"}, True),
        ({"Content-Type": "multipart/form-data; boundary=x", "Content-Length": "3"}, True),
        ({"Content-Type": "text/html", "Transfer-Encoding": "chunked"}, False),
        ({"Content-Type": "application/zip", "Transfer-Encoding": "chunked"}, True),
        ({}, False),  # no body at all: nothing to check
        (
            [("Content-Type", "image/png"), ("Content-Type", "text/html"), ("Content-Length", "3")],
            True,
        ),
    ],
    ids=[
        "png", "png-params-case", "text-wildcard", "json-charset", "missing", "svg", "php",
        "prefix-lookalike", "three-parts", "no-subtype", "space", "multipart", "chunked-text",
        "chunked-zip", "no-body", "two-content-types",
    ],
)  # fmt: skip
async def test_upload_content_types_outside_the_route_list_are_415(
    headers: dict[str, str] | list[tuple[str, str]], refused: bool
) -> None:
    """Upload filters bypassed by parameters, case, prefixes or a second Content-Type header
    (the unrestricted-upload class, OWASP; duplicate Content-Type parser differentials)."""
    stage = CheckUploadType(content_types_by_route([UPLOADS]))
    deny = await stage(cast(RequestScope, _scope(UPLOADS, headers)))
    if refused:
        assert deny is not None and deny.reason is Reason.UNSUPPORTED_MEDIA_TYPE
    else:
        assert deny is None


async def test_routes_without_a_list_accept_any_body() -> None:
    open_route = Upstream(name="open", url="http://127.0.0.1:1")
    stage = CheckUploadType(content_types_by_route([UPLOADS, open_route]))
    scope = _scope(open_route, {"Content-Type": "application/x-php", "Content-Length": "1"})
    assert await stage(cast(RequestScope, scope)) is None


async def test_gateway_answers_415_for_a_disallowed_upload(env: AuthEnv) -> None:
    marker = uuid.uuid4().hex
    extra = "Content-Type: application/x-php\r\nContent-Length: 5\r\n"
    status, parsed, _ = await send(env, head(env, f"/files/{marker}", "POST", extra, "<?php"))
    assert status == 415
    assert parsed["error"]["code"] == "unsupported-media-type"
    assert not requests_with(env, marker)


async def test_gateway_proxies_an_allowed_upload(env: AuthEnv) -> None:
    marker = uuid.uuid4().hex
    extra = "Content-Type: image/png\r\nContent-Length: 4\r\n"
    status, _, _ = await send(env, head(env, f"/files/{marker}", "POST", extra, "PNG!"))
    assert status == 200
    assert len(requests_with(env, marker)) == 1
