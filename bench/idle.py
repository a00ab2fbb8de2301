"""Idle keep-alive client connections held by a server, and a process's memory.

`hold_idle(host, port, n, path)` opens `n` TCP connections, sends one keep-alive request on
each (so every one is a live HTTP/1.1 connection the server keeps open, not a half-open
socket), leaves them idle, then checks that a fresh request still succeeds. It reports the
server's RSS before and while the connections are held. Raise the file-descriptor limit first
(`raise_fd_limit`): each connection costs one descriptor here and one in the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from pathlib import Path
from typing import Any

OPEN_CONCURRENCY = 200
IO_TIMEOUT = 30.0


def raise_fd_limit(wanted: int) -> int:
    """Raises this process's RLIMIT_NOFILE soft limit toward `wanted` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return max(target, soft)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of `pid` in KiB, from /proc (empty if unreadable)."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found


async def _one_request(
    host: str, port: int, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return reader, writer, status


async def _hold(host: str, port: int, n: int, path: str, pid: int) -> dict[str, Any]:
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    held: list[asyncio.StreamWriter] = []
    statuses: dict[int, int] = {}
    failures = 0

    async def open_one() -> None:
        nonlocal failures
        async with gate:
            try:
                _, writer, status = await asyncio.wait_for(
                    _one_request(host, port, path), IO_TIMEOUT
                )
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                failures += 1
                return
            held.append(writer)
            statuses[status] = statuses.get(status, 0) + 1

    before = memory_kib(pid)
    started = time.perf_counter()
    try:
        await asyncio.gather(*(open_one() for _ in range(n)))
        opened_s = time.perf_counter() - started
        _, probe, probe_status = await asyncio.wait_for(_one_request(host, port, path), IO_TIMEOUT)
        probe.close()
        during = memory_kib(pid)
        still_open = sum(1 for w in held if not w.transport.is_closing())
    finally:
        for writer in held:
            writer.close()
    return {
        "wanted": n,
        "held": len(held),
        "still_open_at_probe": still_open,
        "failed": failures,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "open_seconds": round(opened_s, 2),
        "probe_status": probe_status,
        "rss_before_kib": before.get("VmRSS"),
        "rss_held_kib": during.get("VmRSS"),
        "rss_per_connection_bytes": round(
            (during.get("VmRSS", 0) - before.get("VmRSS", 0)) * 1024 / max(len(held), 1)
        ),
    }


def hold_idle(host: str, port: int, n: int, path: str, pid: int) -> dict[str, Any]:
    """Opens and holds `n` idle keep-alive connections to host:port; see the module doc."""
    raise_fd_limit(n + 1024)
    return asyncio.run(_hold(host, port, n, path, pid))
