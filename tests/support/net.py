"""Small networking helpers for tests: free ports, readiness waits and a raw HTTP client.

Everything here is stdlib + aiohttp only and works against any loopback server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import aiohttp

__all__ = [
    "free_port",
    "parse_headers",
    "parse_response",
    "parse_status",
    "raw_request",
    "wait_for_http",
    "wait_for_port",
]

_BACKOFF_START = 0.01
_BACKOFF_MAX = 0.2


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` at the time of the call.

    The port is released before returning, so there is a small window in which something
    else may take it; callers that start servers should still check the server came up.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until a TCP connection to ``host:port`` succeeds.

    Retries with a small exponential backoff; raises ``TimeoutError`` naming the address and
    the last connection error when ``timeout`` seconds pass without success.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = _BACKOFF_START
    last_error: BaseException | None = None
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(
                f"nothing accepted TCP connections on {host}:{port} within {timeout:.1f}s"
                f" (last error: {last_error!r})"
            )
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), timeout=min(remaining, 2.0)
            )
        except (OSError, TimeoutError) as exc:
            last_error = exc
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        await asyncio.sleep(min(delay, max(deadline - loop.time(), 0)))
        delay = min(delay * 2, _BACKOFF_MAX)


async def wait_for_http(url: str, timeout: float = 10.0) -> int:
    """Wait until ``url`` answers any HTTP response; return its status code.

    Connection errors are retried with a small backoff; raises ``TimeoutError`` when
    ``timeout`` seconds pass without an HTTP answer.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = _BACKOFF_START
    last_error: BaseException | None = None
    async with aiohttp.ClientSession() as session:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"{url} gave no HTTP response within {timeout:.1f}s"
                    f" (last error: {last_error!r})"
                )
            try:
                async with session.get(
                    url,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=min(remaining, 2.0)),
                ) as resp:
                    await resp.read()
                    return resp.status
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                last_error = exc
            await asyncio.sleep(min(delay, max(deadline - loop.time(), 0)))
            delay = min(delay * 2, _BACKOFF_MAX)


async def raw_request(host: str, port: int, data: bytes, read_timeout: float = 5.0) -> bytes:
    """Send ``data`` verbatim over a fresh TCP connection and return every byte received.

    Reading stops when the server closes the connection (or resets it) or when
    ``read_timeout`` seconds have passed in total; whatever arrived until then is returned.
    Send ``Connection: close`` in the request to make the server end the exchange promptly.
    """
    reader, writer = await asyncio.open_connection(host, port)
    received = bytearray()
    deadline = time.monotonic() + read_timeout
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                chunk = await asyncio.wait_for(reader.read(65536), timeout=remaining)
            except TimeoutError:
                break
            except ConnectionError:
                break
            if not chunk:
                break
            received += chunk
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return bytes(received)


def parse_status(resp: bytes) -> int:
    """Return the status code of the first response in raw bytes ``resp``.

    Raises ``ValueError`` if ``resp`` does not start with an HTTP status line.
    """
    line, _, _ = resp.partition(b"\r\n")
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response status line: {line[:200]!r}")
    return int(parts[1])


def parse_headers(resp: bytes) -> list[tuple[str, str]]:
    """Return the header fields of the first response in ``resp``, in order, duplicates kept."""
    head, sep, _ = resp.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("response head is incomplete (no blank line after the headers)")
    headers: list[tuple[str, str]] = []
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise ValueError(f"malformed header line: {line[:200]!r}")
        headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
    return headers


def _decode_chunked(body: bytes) -> bytes:
    out = bytearray()
    rest = body
    while True:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            raise ValueError("truncated chunked body")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            return bytes(out)
        if len(rest) < size + 2:
            raise ValueError("truncated chunked body")
        out += rest[:size]
        rest = rest[size + 2 :]


def parse_response(resp: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """Split one raw HTTP/1.x response into ``(status, headers, body)``.

    A chunked body is decoded; otherwise the body is everything after the head (trimmed to
    ``Content-Length`` when present). Meant for responses read until the server closed.
    """
    status = parse_status(resp)
    headers = parse_headers(resp)
    _, _, body = resp.partition(b"\r\n\r\n")
    lowered = {name.lower(): value for name, value in headers}
    if "chunked" in lowered.get("transfer-encoding", "").lower():
        body = _decode_chunked(body)
    elif "content-length" in lowered:
        body = body[: int(lowered["content-length"])]
    return status, headers, body
