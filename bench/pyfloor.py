"""The floor of a Python data plane: a minimal keep-alive proxy with no policy at all.

    python bench/pyfloor.py --port 18090 --upstream 127.0.0.1:18080

uvloop (when installed) and httptools, one upstream connection per client connection, the
request head re-sent with `X-Forwarded-For` added, the response relayed whole. No routing, no
limits, no checks, no metrics: it is NOT a proxy to use, only the reference row `py-floor` of
`full.py`, which shows what the event loop, the C parser and the four socket calls of a
proxied request cost in CPython on the machine measured. The gap between it and the gateway's
rows is the gateway's per-request Python work.

Assumes well-behaved bench traffic: bodiless requests, upstream answers with a body framed
by Content-Length. Only loopback addresses are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
from typing import Any

import httptools


class _Upstream(asyncio.Protocol):
    """The upstream side of one client connection: relays each complete response."""

    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.transport: Any = None
        self.lines: list[bytes] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.lines.append(name + b": " + value)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        head = b"HTTP/1.1 %d OK\r\n" % status + b"\r\n".join(self.lines) + b"\r\n\r\n"
        self.client.write(head + b"".join(self.body))
        self.lines, self.body = [], []

    def connection_lost(self, exc: BaseException | None) -> None:
        self.client.close()


class _Client(asyncio.Protocol):
    """One client connection: each complete request head is re-sent upstream."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream_addr = upstream
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.upstream: _Upstream | None = None
        self.pending: list[bytes] = []
        self.url = b""
        self.lines: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.upstream = _Upstream(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.upstream is not None
        try:
            await loop.create_connection(lambda: self.upstream, *self.upstream_addr)
        except OSError:
            self.transport.close()
            return
        for head in self.pending:
            self.upstream.transport.write(head)
        self.pending = []

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.lines.append(name + b": " + value)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        self.lines.append(b"X-Forwarded-For: 127.0.0.1")
        head = method + b" " + self.url + b" HTTP/1.1\r\n" + b"\r\n".join(self.lines)
        head += b"\r\n\r\n"
        self.lines = []
        upstream = self.upstream
        if upstream is None or upstream.transport is None:
            self.pending.append(head)
        else:
            upstream.transport.write(head)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()


async def serve(host: str, port: int, upstream: tuple[str, int]) -> None:
    """Serves until cancelled."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Client(upstream), host, port, reuse_address=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the upstream")
    args = parser.parse_args()
    up_host, _, up_port = args.upstream.rpartition(":")
    for address in (args.host, up_host):
        if not ipaddress.ip_address(address).is_loopback:
            parser.error(f"only loopback addresses are accepted: {address}")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.host, args.port, (up_host, int(up_port))))


if __name__ == "__main__":
    main()
