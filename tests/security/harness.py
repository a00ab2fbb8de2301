"""Shared helpers for the attack regression suite: raw requests against the real gateway and
what the echo upstream saw of them."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.auth_helpers import AuthEnv
from tests.support.net import parse_response, raw_request

SECRET_MARKERS = (
    "Traceback",
    'File "',
    '.py", line',
    "site-packages",
    "/gateway/",
    "sqlite",
    "asyncpg",
    "master.key",
    "BEGIN PRIVATE KEY",
)
"""Strings that must never appear in a response body: stack traces, module paths, key files."""


def head(
    env: AuthEnv, target: str = "/public/x", method: str = "GET", extra: str = "", body: str = ""
) -> bytes:
    """A well-formed HTTP/1.1 request (CRLF, one Host, Connection: close) with `extra` lines."""
    return (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{env.gw.port}\r\n{extra}"
        f"Connection: close\r\n\r\n{body}"
    ).encode()


async def send(env: AuthEnv, data: bytes, read_timeout: float = 5.0) -> tuple[int, Any, bytes]:
    """Sends raw bytes; returns (status, parsed JSON body or None, raw response)."""
    raw = await raw_request(env.gw.host, env.gw.port, data, read_timeout=read_timeout)
    assert raw, "the gateway closed the connection without answering"
    status, _, body = parse_response(raw)
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    return status, parsed, raw


def requests_with(env: AuthEnv, marker: str) -> list[dict[str, Any]]:
    """The upstream's records whose path, query or headers contain `marker`."""
    found = []
    for record in env.upstream.requests:
        text = json.dumps(record)
        if marker in text:
            found.append(record)
    return found


def assert_no_leak(raw: bytes, *secrets: str) -> None:
    """No stack trace, module path, key material or any of `secrets` in a raw response."""
    text = raw.decode("latin-1")
    for marker in (*SECRET_MARKERS, *secrets):
        assert marker not in text, f"response leaks {marker!r}: {text[:500]!r}"
