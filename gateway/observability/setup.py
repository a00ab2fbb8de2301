"""Wiring observability into the gateway application: `setup_observability(app, config)`.

Guarantees: calling it more than once on an app changes nothing after the first call; it
must run before the app starts (middlewares freeze at startup). After it, every request is
measured and access-logged, tracing is on exactly when `tracing.otlp_endpoint` is set (or a
test passes an exporter) and is shut down (spans flushed) with the app, the change-bus state
is exported once the stores are open, and the configured database and Redis URLs are masked
in every log line.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from opentelemetry.sdk.trace.export import SpanExporter

from gateway import keys
from gateway.config import GatewayConfig
from gateway.observability import tracing
from gateway.observability.http import ACCESS, observe_middleware
from gateway.observability.metrics import BUS_CONNECTED, BUS_EVENTS
from gateway.observability.redact import register_secret
from gateway.observability.tally import FLUSH_SECONDS, flush_tallies
from gateway.storage.ports import BUS_DISCONNECTED, BUS_RESYNC, ChangeBus

OBSERVED = web.AppKey("gateway_observability", bool)


def register_config_secrets(config: GatewayConfig) -> None:
    """Masks the database and Redis URLs (and their passwords alone) in all log output."""
    for secret in (config.database_url, config.redis_url):
        if secret is None:
            continue
        value = secret.get_secret_value()
        register_secret(value)
        register_secret(urlsplit(value).password)


def watch_bus(bus: ChangeBus) -> Callable[[], None]:
    """Keeps `gateway_changebus_connected_state` current; returns the unsubscribe function."""
    connected = getattr(bus, "connected", None)
    gauge = BUS_CONNECTED.labels("memory" if connected is None else "redis")
    gauge.set(0 if connected is False else 1)

    async def on_notice(topic: str, _payload: Mapping[str, Any]) -> None:
        if topic == BUS_DISCONNECTED:
            gauge.set(0)
            BUS_EVENTS.labels("disconnected").inc()
        elif topic == BUS_RESYNC:
            gauge.set(1)
            BUS_EVENTS.labels("resync").inc()

    return bus.subscribe(on_notice)


async def _bus_ctx(app: web.Application) -> AsyncIterator[None]:
    stores = app.get(keys.STORES)
    unsubscribe = watch_bus(stores.bus) if stores is not None else None
    try:
        yield
    finally:
        if unsubscribe is not None:
            unsubscribe()


async def _flush_ctx(_app: web.Application) -> AsyncIterator[None]:
    """Adds the hot path's tallied counts to their metrics every second (see `tally`)."""

    async def flush_forever() -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            flush_tallies()

    task = asyncio.get_running_loop().create_task(flush_forever())
    try:
        yield
    finally:
        task.cancel()
        flush_tallies()


async def _stop_tracing(_app: web.Application) -> None:
    tracing.disable()


def setup_observability(
    app: web.Application, config: GatewayConfig, *, exporter: SpanExporter | None = None
) -> None:
    """Installs the request middlewares, tracing and the change-bus gauge on `app`.

    Call it after the stores are registered (`setup_services`), so that the bus watcher
    starts once they are open. `exporter` (tests) enables tracing without OTLP.
    """
    if app.get(OBSERVED):
        return
    app[OBSERVED] = True
    register_config_secrets(config)
    ACCESS.enabled = config.logging.access_log
    ACCESS.sample = config.logging.access_log_sample
    app.middlewares.insert(0, observe_middleware)
    if exporter is not None or config.tracing.otlp_endpoint is not None:
        tracing.enable(tracing.build_provider(config.tracing, exporter))
        app.middlewares.insert(0, tracing.tracing_middleware)
        app.on_cleanup.append(_stop_tracing)
    app.cleanup_ctx.append(_bus_ctx)
    app.cleanup_ctx.append(_flush_ctx)
