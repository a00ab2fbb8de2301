"""A minimal, fast HTTP/1.1 upstream for throughput benchmarks.

Answers every request, whatever its method or path, with ``200`` and a fixed 256-byte JSON
body. It is a raw asyncio protocol (no framework), keeps connections alive, copes with
pipelined requests and request bodies sent with ``Content-Length``, and runs on uvloop when
it is installed, so that it stays far cheaper per request than anything placed in front of it.

    python bench/upstream.py --port 18080            # raw protocol (default)
    python bench/upstream.py --port 18080 --aiohttp  # the same answer from aiohttp.web

Only loopback addresses are accepted for ``--host``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
import sys
from typing import cast

BODY_SIZE = 256
BODY = (b'{"ok":true,"pad":"' + b"x" * (BODY_SIZE - 20) + b'"}')[:BODY_SIZE]
assert len(BODY) == BODY_SIZE

_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
)
RESPONSE_KEEP_ALIVE = _HEAD + b"\r\n" + BODY
RESPONSE_CLOSE = _HEAD + b"Connection: close\r\n\r\n" + BODY
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
MAX_HEAD = 64 * 1024


class _HttpProtocol(asyncio.Protocol):
    """Parses just enough HTTP/1.x: the head, Content-Length, and Connection: close."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.skip = 0  # request-body bytes still to discard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so no isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.skip:
            taken = min(self.skip, len(data))
            self.skip -= taken
            data = data[taken:]
        self.buffer += data
        out = []
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    transport.write(BAD_REQUEST)
                    transport.close()
                break
            head = bytes(self.buffer[:end]).lower()
            del self.buffer[: end + 4]
            length, close = _body_length_and_close(head)
            if length < 0:  # chunked or malformed: not supported, answer and hang up
                out.append(BAD_REQUEST)
                transport.write(b"".join(out))
                transport.close()
                return
            if length:
                taken = min(length, len(self.buffer))
                del self.buffer[:taken]
                self.skip = length - taken
            if close:
                out.append(RESPONSE_CLOSE)
                transport.write(b"".join(out))
                transport.close()
                return
            out.append(RESPONSE_KEEP_ALIVE)
            if self.skip:
                break
        if out:
            transport.write(b"".join(out))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _body_length_and_close(head: bytes) -> tuple[int, bool]:
    """(Content-Length or -1 if unsupported, whether to close) from a lower-cased head."""
    length = 0
    http10 = head.split(b"\r\n", 1)[0].endswith(b"http/1.0")
    close = http10
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip()
        if name == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return -1, True
        elif name == b"transfer-encoding":
            return -1, True
        elif name == b"connection":
            if b"close" in value:
                close = True
            elif b"keep-alive" in value:
                close = False
    return length, close


async def _serve_raw(host: str, port: int, ready: asyncio.Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_HttpProtocol, host, port, reuse_address=True, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with server:
        if ready is not None:
            ready.set()
        await stop.wait()


def _run_aiohttp(host: str, port: int) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    web.run_app(app, host=host, port=port, access_log=None, print=None)


def _install_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def _loopback(text: str) -> str:
    if not ipaddress.ip_address(text).is_loopback:
        raise argparse.ArgumentTypeError("only a loopback address such as 127.0.0.1")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", type=_loopback, default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--aiohttp", action="store_true", help="serve with aiohttp.web instead")
    parser.add_argument("--no-uvloop", action="store_true", help="keep the default event loop")
    args = parser.parse_args(argv)
    if not args.no_uvloop:
        _install_uvloop()
    if args.aiohttp:
        _run_aiohttp(args.host, args.port)
    else:
        asyncio.run(_serve_raw(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
