"""Writing responses on the fast path: one encoded head, then the body as it arrives.

Guarantees: every response carries `Date`, a framing the client can rely on
(`Content-Length`, chunked for HTTP/1.1 bodies of unknown length, or the end of the
connection for HTTP/1.0), `Connection: close` when the connection ends after it, and no
header line holding CR or LF. A body cut short aborts the connection: it never looks whole.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import Final, Protocol

from aiohttp import web
from aiohttp.http import HttpVersion

from gateway.proxy.exchange import HeaderInjection, join_head

NO_BODY_STATUSES: Final = frozenset({204, 304})
LAST_CHUNK: Final = b"0\r\n\r\n"
_REASONS: Final = {status.value: status.phrase for status in HTTPStatus}


ResponseInjection = HeaderInjection
"""A response header held CR or LF (the same refusal as for upstream request heads)."""


class Sink(Protocol):
    """Where a fast-path response is written: the client connection."""

    lost: bool
    """True once the client has gone."""
    started: bool
    """True once any byte of the answer was written."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def abort(self) -> None: ...


class _Clock:
    """The `Date` value, formatted once per second."""

    second = -1
    value = ""

    def date(self) -> str:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.value = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))
        return self.value


CLOCK = _Clock()


def encode_head(
    version: HttpVersion,
    status: int,
    reason: str | None,
    headers: Iterable[tuple[str, str]],
    *,
    keep_alive: bool,
    chunked: bool = False,
) -> bytes:
    """The status line and header block (with `Date`, framing and `Connection` added)."""
    lines = [f"HTTP/{version.major}.{version.minor} {status} {reason or _REASONS.get(status, '')}"]
    has_date = False
    for name, value in headers:
        if not has_date and name.lower() == "date":
            has_date = True
        lines.append(f"{name}: {value}")
    if not has_date:
        lines.append(f"Date: {CLOCK.date()}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    if not keep_alive:
        lines.append("Connection: close")
    return join_head(lines)  # refuses CR/LF inside a line (response splitting)


def write_complete(
    sink: Sink,
    version: HttpVersion,
    response: web.Response,
    *,
    keep_alive: bool,
    head_only: bool,
) -> bool:
    """Writes a response built by the gateway (a denial); True when the connection may
    carry another request."""
    body = response.body
    if body is None:
        payload = b""
    elif isinstance(body, bytes | bytearray):
        payload = bytes(body)
    else:
        raise TypeError("the fast path writes only byte bodies")
    keep_alive = keep_alive and response.keep_alive is not False
    headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
    if response.status not in NO_BODY_STATUSES:
        headers.append(("Content-Length", str(len(payload))))
    head = encode_head(version, response.status, response.reason, headers, keep_alive=keep_alive)
    sink.write(head if head_only or response.status in NO_BODY_STATUSES else head + payload)
    return keep_alive
