"""CPU per request of the gateway's fast path, in one process, without a load generator.

    .venv/bin/python bench/hotpath.py [--requests 20000] [--profile]

Starts the upstream (`bench/upstream.py`) and the gateway in this process (the same
configuration as `full.py`: public path, rate-limit rule), signs up the bench user and makes
an API key through the real HTTP API, then calls the fast path's `FastPath.serve` directly,
one request after another, for the four gateway rows of `full.py` (public, session cookie,
API key, browser-like), and prints microseconds per request. With `--profile`, cProfile's
top functions (by own time) follow each row. Nothing here is load: it isolates the
gateway's own work from wrk and scheduling noise, so before/after comparisons of the hot
path are steady.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    from bench import full
    from bench import throughput as tp
except ModuleNotFoundError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench import full
    from bench import throughput as tp


ROWS = ("gw-public", "gw-session", "gw-apikey", "gw-browser")


class NullSink:
    """Swallows the response bytes (the request is answered in memory)."""

    lost = False
    started = False

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.bytes += len(data)

    async def drain(self) -> None:
        return None

    def abort(self) -> None:
        raise RuntimeError("the fast path aborted a response")


def head_fields(headers: tuple[str, ...]) -> list[tuple[bytes, bytes]]:
    fields = [(b"Host", b"127.0.0.1"), (b"User-Agent", b"hotpath"), (b"Accept", b"*/*")]
    for line in headers:
        name, _, value = line.partition(": ")
        fields.append((name.encode(), value.encode()))
    return fields


async def run_row(app: Any, path: str, headers: tuple[str, ...], count: int) -> float:
    """CPU microseconds per request over `count` sequential fast-path requests."""
    from aiohttp.http import HttpVersion11

    from gateway.app import FAST_PATH
    from gateway.front.request import FastRequest

    fast = app[FAST_PATH]
    sink = NullSink()
    fields = head_fields(headers)
    transport: Any = None

    def request() -> FastRequest:
        return FastRequest(
            "GET", path, HttpVersion11, fields, "127.0.0.1", "http", transport, None, "x"
        )

    for _ in range(200):  # warm caches
        await fast.serve(request(), sink, True)
    started = time.process_time()  # this process's CPU: the upstream's and the wait excluded
    for _ in range(count):
        await fast.serve(request(), sink, True)
    return (time.process_time() - started) * 1e6 / count


async def main(args: argparse.Namespace) -> None:
    from gateway.runtime import start_front
    from gateway.server import GatewayAppRunner, handler_kwargs

    with tempfile.TemporaryDirectory(prefix="gw-hotpath-") as tmp:
        workdir = Path(tmp)
        upstream, upstream_url = tp.start_upstream(workdir)
        try:
            from gateway.config import GatewayConfig

            config_dict = full.gateway_config(workdir, upstream_url)
            config_dict.pop("metrics", None)
            config = GatewayConfig.model_validate(config_dict)
            from gateway.app import build_app

            app = build_app(config)
            runner = GatewayAppRunner(app, **handler_kwargs(16384, 100))
            bound = await start_front(runner, app, config, None, reuse_port=False)
            base = f"http://{bound}"
            cookie, bearer = await full._credentials(base)
            rows = [
                ("gw-public", full.PUBLIC_PATH, ()),
                ("gw-session", full.APP_PATH, (cookie,)),
                ("gw-apikey", full.APP_PATH, (bearer,)),
                ("gw-browser", full.APP_PATH, full.browser_headers(cookie)),
            ]
            for name, path, headers in rows:
                if args.row and name not in args.row:
                    continue
                profiler = cProfile.Profile() if args.profile else None
                if profiler is not None:
                    profiler.enable()
                micros = await run_row(app, path, headers, args.requests)
                if profiler is not None:
                    profiler.disable()
                print(f"{name:<11} {micros:8.1f} µs/request")
                if profiler is not None:
                    out = io.StringIO()
                    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(45)
                    print(out.getvalue())
            await runner.cleanup()
        finally:
            upstream.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--row", action="append", choices=ROWS, help="only this row (repeatable; default: all)"
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(parser.parse_args()))
