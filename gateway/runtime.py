"""Running the gateway: listeners, signals, and several worker processes on one port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from gateway.app import build_app
from gateway.config import GatewayConfig
from gateway.server import GatewayAppRunner, bind_socket, handler_kwargs, parse_listen
from gateway.storage.state import open_state_dir

log = logging.getLogger("gateway")


def build_metrics_app() -> web.Application:
    """The metrics listener's application: `/metrics` and nothing else."""
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler())
    return app


async def start_site(
    runner: web.AppRunner, listen: str, *, reuse_port: bool
) -> tuple[web.SockSite, str]:
    """Binds `listen` and starts serving; returns the site and the bound HOST:PORT."""
    host, port = parse_listen(listen)
    await runner.setup()
    sock = bind_socket(host, port, reuse_port=reuse_port)
    site = web.SockSite(runner, sock)
    await site.start()
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return site, f"{shown}:{bound_port}"


async def serve(
    config: GatewayConfig,
    *,
    reuse_port: bool = False,
    on_ready: Callable[[str], None] | None = None,
    extra_cleanup: list[web.AppRunner] | None = None,
) -> None:
    """Serves until SIGINT or SIGTERM, then drains and closes every resource."""
    app = build_app(config)
    runner = GatewayAppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=10,
        **handler_kwargs(config.limits.max_header_bytes, config.limits.max_headers),
    )
    _, bound = await start_site(runner, config.listen, reuse_port=reuse_port)
    metrics_runner = None
    if config.metrics.listen:
        metrics_runner = web.AppRunner(build_metrics_app(), access_log=None)
        await start_site(metrics_runner, config.metrics.listen, reuse_port=reuse_port)
    log.info("gateway listening on http://%s", bound)
    if on_ready:
        on_ready(bound)
    try:
        await wait_for_stop_signal()
    finally:
        log.info("gateway shutting down")
        for extra in extra_cleanup or []:
            await extra.cleanup()
        if metrics_runner:
            await metrics_runner.cleanup()
        await runner.cleanup()


async def wait_for_stop_signal() -> None:
    """Returns when the process receives SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def install_uvloop() -> None:
    """Uses uvloop's faster event loop when it is installed."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_worker(config: GatewayConfig, reuse_port: bool) -> None:
    """One serving process (also the body of each `--workers` child)."""
    install_uvloop()
    asyncio.run(serve(config, reuse_port=reuse_port))


def run_workers(config: GatewayConfig, workers: int) -> int:
    """Runs `workers` processes sharing the listening port (SO_REUSEPORT) and supervises them.

    The parent prepares the state (keys, schema) once, so children never race to create it;
    a signal to the parent is passed to every child, and the parent exits when all have.
    """
    open_state_dir(config.state_dir)
    asyncio.run(_migrate_once(config))
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=run_worker, args=(config, True), daemon=False) for _ in range(workers)
    ]
    for proc in procs:
        proc.start()

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.pid and proc.is_alive():
                os.kill(proc.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = []
    for proc in procs:
        proc.join()
        codes.append(proc.exitcode or 0)
    return max(codes, default=0)


async def _migrate_once(config: GatewayConfig) -> None:
    """Opens the stores once so the schema is ready (or refused) before any worker starts."""
    from gateway.storage.factory import open_stores

    async with open_stores(config, open_state_dir(config.state_dir)):
        pass


def flush_std() -> None:
    """Flush stdout/stderr (line-oriented output for supervisors and tests)."""
    sys.stdout.flush()
    sys.stderr.flush()
