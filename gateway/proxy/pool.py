"""A lean keep-alive pool of HTTP/1.1 connections to upstreams.

Guarantees:

* a connection is handed out to one exchange at a time and comes back only through
  `release()`, which keeps it solely when `UpstreamConnection.reusable` holds (the response
  was read to its framed end and both sides allowed keep-alive); anything else is closed;
* at most `max_idle` idle connections are kept per origin (the warmest first: LIFO), and one
  idle longer than `idle_timeout` seconds, or closed by the upstream meanwhile, is dropped
  when next met, never handed out;
* connecting is bounded by the caller's connect timeout; https origins use TLS with
  certificate and host-name verification (`ssl.create_default_context()` unless given).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from typing import NamedTuple, cast

from yarl import URL

from gateway.proxy.conn import UpstreamConnection

DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    """Where an upstream listens: scheme, host and port (the pool's key: a named tuple, so
    the two lookups per request hash in C)."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: URL) -> Origin:
        """The origin of an absolute http(s) URL."""
        if url.scheme not in DEFAULT_PORTS or not url.host:
            raise ValueError(f"not an http(s) upstream: {url.scheme}://")
        return cls(url.scheme, url.host, url.port or DEFAULT_PORTS[url.scheme])

    @property
    def host_header(self) -> str:
        """The `Host` value for this origin (port only when not the scheme's default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"


class UpstreamPool:
    """Idle keep-alive connections per origin; see the module docstring for the guarantees."""

    def __init__(
        self,
        *,
        max_idle: int = 256,
        idle_timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        ssl_by_origin: Mapping[Origin, ssl.SSLContext] | None = None,
    ) -> None:
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._ssl = ssl_context
        self._ssl_by_origin = dict(ssl_by_origin or {})
        self._idle: dict[Origin, list[UpstreamConnection]] = {}
        self._live: set[UpstreamConnection] = set()
        self.opened = 0

    def _ssl_for(self, origin: Origin) -> ssl.SSLContext | None:
        if origin.scheme != "https":
            return None
        # An upstream with its own CA or client certificate (mTLS) uses its own context.
        configured = self._ssl_by_origin.get(origin)
        if configured is not None:
            return configured
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def acquire(
        self, origin: Origin, connect_timeout: float | None, *, fresh: bool = False
    ) -> tuple[UpstreamConnection, bool]:
        """A connection to `origin` and whether it was reused (`fresh`: never reuse)."""
        idle = self._idle.get(origin)
        if idle and not fresh:
            while idle:
                conn = idle.pop()
                if conn.closed:
                    continue
                if conn.loop.time() - conn.idle_since > self.idle_timeout:
                    conn.close()
                    continue
                return conn, True
        return await self._connect(origin, connect_timeout), False

    async def _connect(self, origin: Origin, limit: float | None) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        context = self._ssl_for(origin)
        async with asyncio.timeout(limit):
            _, conn = await loop.create_connection(
                lambda: UpstreamConnection(self._lost),
                origin.host,
                origin.port,
                ssl=context,
                server_hostname=origin.host if context is not None else None,
            )
        transport = cast(asyncio.Transport, conn.transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._live.add(conn)
        self.opened += 1
        return conn

    def release(self, origin: Origin, conn: UpstreamConnection) -> None:
        """Takes `conn` back after its exchange: kept idle if reusable and room is left."""
        if not conn.reusable:
            conn.close()
            return
        idle = self._idle.get(origin)
        if idle is None:
            idle = self._idle[origin] = []
        if len(idle) >= self.max_idle:
            conn.close()
            return
        conn.parser = None  # SECURITY: any byte arriving while idle closes the connection
        conn.idle_since = conn.loop.time()
        idle.append(conn)

    def _lost(self, conn: UpstreamConnection) -> None:
        self._live.discard(conn)

    def idle_count(self, origin: Origin) -> int:
        """How many idle connections to `origin` are kept (closed ones may still be counted)."""
        return len(self._idle.get(origin, ()))

    def close(self) -> None:
        """Closes every connection, idle or in use; the pool stays usable afterwards."""
        for conn in list(self._live):
            conn.close()
        self._live.clear()
        self._idle.clear()
