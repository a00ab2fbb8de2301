"""Running the gateway: listeners, signals, and several worker processes on one port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.aiohttp import make_aiohttp_handler

from gateway.app import FAST_PATH, HSTS, build_app
from gateway.config import GatewayConfig
from gateway.front.protocol import FrontSettings
from gateway.front.serve import FastPath
from gateway.front.site import FrontSite
from gateway.observability import tracing
from gateway.observability.logs import configure_logging
from gateway.observability.setup import setup_observability
from gateway.observability.tally import flush_tallies
from gateway.server import (
    KEEPALIVE_TIMEOUT,
    GatewayAppRunner,
    bind_socket,
    handler_kwargs,
    parse_listen,
    without_banner,
)
from gateway.storage.state import open_state_dir
from gateway.tls import HSTS_HEADER, hsts_value, reloading, server_context

log = logging.getLogger("gateway")


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_registry() -> CollectorRegistry:
    """The registry `/metrics` serves: this process's, or with `--workers` (where the parent
    set PROMETHEUS_MULTIPROC_DIR) the sum over every worker, so any worker's answer to a
    scrape covers them all."""
    if not os.environ.get(MULTIPROC_ENV):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def build_metrics_app() -> web.Application:
    """The metrics listener's application: `/metrics` and nothing else.

    # SECURITY: a separate listener with no gateway middleware or routes: metrics are never
    # served on the main listener, and nothing of the gateway is served here.
    """
    app = without_banner(web.Application())
    serve_metrics = make_aiohttp_handler(registry=metrics_registry())

    async def metrics(request: web.Request) -> web.StreamResponse:
        # With --workers the registry reads every worker's files, not this process's
        # collectors: flush this worker's tallies first (the others' are ≤ 1 s behind).
        flush_tallies()
        return await serve_metrics(request)

    app.router.add_get("/metrics", metrics)
    return app


def prepare_multiprocess_metrics(config: GatewayConfig) -> Path | None:
    """For `--workers`: an empty per-run directory for the workers' metric files, exported as
    PROMETHEUS_MULTIPROC_DIR so that the spawned workers aggregate (None: no metrics)."""
    if not config.metrics.listen:
        return None
    directory = open_state_dir(config.state_dir).root / "metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


async def start_site(
    runner: web.AppRunner,
    listen: str,
    *,
    reuse_port: bool,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.SockSite, str]:
    """Binds `listen` and starts serving (HTTPS with `ssl_context`); returns the site and the
    bound HOST:PORT."""
    host, port = parse_listen(listen)
    # Bind first: a taken port must fail before any store or background task is opened.
    sock = bind_socket(host, port, reuse_port=reuse_port)
    await runner.setup()
    site = web.SockSite(runner, sock, ssl_context=ssl_context)
    await site.start()
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return site, f"{shown}:{bound_port}"


async def start_front(
    runner: GatewayAppRunner,
    app: web.Application,
    config: GatewayConfig,
    ssl_context: ssl.SSLContext | None,
    *,
    reuse_port: bool,
) -> str:
    """Binds the main listener with the fast front (`gateway.front`) before aiohttp's
    handler, starts serving, and returns the bound HOST:PORT."""
    host, port = parse_listen(config.listen)
    sock = bind_socket(host, port, reuse_port=reuse_port)
    await runner.setup()
    server = runner.server
    assert server is not None

    def fast_path() -> FastPath | None:
        # The aiohttp path carries the OpenTelemetry server instrumentation.
        return app.get(FAST_PATH) if tracing.STATE.tracer is None else None

    settings = FrontSettings(
        server,
        fast_path,
        max_head_bytes=config.limits.max_header_bytes,
        max_headers=config.limits.max_headers,
        header_read_timeout=config.limits.header_read_timeout,
        keepalive_timeout=KEEPALIVE_TIMEOUT,
        tls=ssl_context is not None,
    )
    runner.fronts.append(settings)
    await FrontSite(runner, sock, settings, ssl_context=ssl_context).start()
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return f"{shown}:{bound_port}"


async def serve(
    config: GatewayConfig,
    *,
    reuse_port: bool = False,
    on_ready: Callable[[str], None] | None = None,
    extra_cleanup: list[web.AppRunner] | None = None,
) -> None:
    """Serves until SIGINT or SIGTERM, then drains and closes every resource."""
    tls = server_context(config.tls)  # before build_app: a bad certificate fails fast
    app = build_app(config)
    setup_observability(app, config)  # a no-op once build_app wires it itself
    if tls is not None:
        app.on_response_prepare.append(hsts_hook(config.tls.hsts_max_age))
        if config.tls.hsts_max_age > 0:
            app[HSTS] = hsts_value(config.tls.hsts_max_age)
    runner = GatewayAppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=10,
        **handler_kwargs(
            config.limits.max_header_bytes,
            config.limits.max_headers,
            header_read_timeout=config.limits.header_read_timeout,
            body_read_timeout=config.limits.body_read_timeout,
        ),
    )
    ssl_context = tls[0] if tls is not None else None
    bound = await start_front(runner, app, config, ssl_context, reuse_port=reuse_port)
    metrics_runner = None
    if config.metrics.listen:
        metrics_runner = web.AppRunner(build_metrics_app(), access_log=None)
        await start_site(metrics_runner, config.metrics.listen, reuse_port=reuse_port)
    log.info("gateway listening on %s://%s", "https" if tls else "http", bound)
    if on_ready:
        on_ready(bound)
    try:
        async with reloading(tls[1] if tls is not None else None):
            await wait_for_stop_signal()
    finally:
        log.info("gateway shutting down")
        for extra in extra_cleanup or []:
            await extra.cleanup()
        if metrics_runner:
            await metrics_runner.cleanup()
        await runner.cleanup()


def hsts_hook(
    max_age: int,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """A response hook adding Strict-Transport-Security; installed only on a TLS listener.

    # SECURITY: HSTS over plain HTTP is ignored by browsers and would mislead; it is only
    # ever sent on the listener that actually serves TLS. An upstream's own value is kept.
    """
    value = hsts_value(max_age)

    async def add_hsts(request: web.Request, response: web.StreamResponse) -> None:
        if max_age > 0 and request.secure:
            response.headers.setdefault(HSTS_HEADER, value)

    return add_hsts


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


def run_worker(config: GatewayConfig, reuse_port: bool, log_format: str | None = None) -> None:
    """One serving process (also the body of each `--workers` child, which being spawned
    configures its own logging: `log_format`)."""
    if log_format is not None:
        configure_logging(config.logging.level, log_format)
    install_uvloop()
    asyncio.run(serve(config, reuse_port=reuse_port))


def run_workers(config: GatewayConfig, workers: int) -> int:
    """Runs `workers` processes sharing the listening port (SO_REUSEPORT) and supervises them.

    The parent prepares the state (keys, schema) once, so children never race to create it;
    a signal to the parent is passed to every child, and the parent exits when all have.
    """
    open_state_dir(config.state_dir)
    asyncio.run(_migrate_once(config))
    prepare_multiprocess_metrics(config)
    ctx = multiprocessing.get_context("spawn")
    fmt = config.logging.format
    procs = [
        ctx.Process(target=run_worker, args=(config, True, fmt), daemon=False)
        for _ in range(workers)
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
        if proc.pid and os.environ.get(MULTIPROC_ENV):
            multiprocess.mark_process_dead(proc.pid)  # type: ignore[no-untyped-call]
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
