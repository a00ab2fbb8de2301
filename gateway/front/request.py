"""A parsed request head that stands in for aiohttp's `web.Request` on the fast path.

The proxy chain, the denial responses and the observability code read a small part of
`web.Request`: method, raw path, version, headers (parsed and raw), Host, the peer address,
the scheme, body presence, and a per-request key/value store. `FastRequest` provides exactly
that for a request without a body, built from the fields httptools parsed, so a bodiless
proxied request never creates aiohttp's request, payload and writer objects.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import streams
from aiohttp.http import HttpVersion
from multidict import CIMultiDict, CIMultiDictProxy


class FastRequest:
    """One bodiless request: the `web.Request` attributes the proxy chain reads, no more.

    Guarantees: `headers` and `raw_headers` hold every header line in wire order, decoded
    as aiohttp decodes them (UTF-8, undecodable bytes kept as surrogates); `content` is an
    empty stream; `host` is the Host header or, without one, the listener's own address.
    """

    __slots__ = (
        "_fallback_host",
        "_store",
        "headers",
        "method",
        "protocol",
        "raw_headers",
        "raw_path",
        "remote",
        "scheme",
        "transport",
        "version",
    )

    body_exists = False
    content = streams.EMPTY_PAYLOAD

    def __init__(
        self,
        method: str,
        raw_path: str,
        version: HttpVersion,
        raw_headers: list[tuple[bytes, bytes]],
        remote: str | None,
        scheme: str,
        transport: asyncio.Transport,
        protocol: asyncio.Protocol,
        fallback_host: str,
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.version = version
        self.raw_headers = tuple(raw_headers)
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(
            CIMultiDict(
                [
                    (
                        name.decode("utf-8", "surrogateescape"),
                        value.decode("utf-8", "surrogateescape"),
                    )
                    for name, value in raw_headers
                ]
            )
        )
        self.remote = remote
        self.scheme = scheme
        self.transport: asyncio.Transport | None = transport
        self.protocol = protocol
        self._fallback_host = fallback_host
        self._store: dict[Any, Any] = {}

    @property
    def host(self) -> str:
        """The Host header, else the address the client connected to (as aiohttp does)."""
        return self.headers.get("Host") or self._fallback_host

    @property
    def secure(self) -> bool:
        return self.scheme == "https"

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    def __getitem__(self, key: Any) -> Any:
        return self._store[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._store[key] = value

    def __contains__(self, key: Any) -> bool:
        return key in self._store

    def get(self, key: Any, default: Any = None) -> Any:
        return self._store.get(key, default)
