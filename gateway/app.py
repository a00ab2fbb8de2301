"""The composition root: configuration -> stores -> services -> aiohttp Application.

This is the only module that names concrete adapters. Each area registers itself through a
small `setup_<area>()` function; resources are opened in `cleanup_ctx` so they close in
reverse order on shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway import keys
from gateway.config import GatewayConfig
from gateway.pipeline.chain import ChainParts, build_proxy_chain
from gateway.pipeline.entry import ScopeFactory, make_proxy_handler
from gateway.proxy.clientip import TrustedProxies
from gateway.proxy.forward import Forwarder, open_upstream_session
from gateway.proxy.headers import OwnedHeaders
from gateway.proxy.routes import RouteTable
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.state import StateDir, open_state_dir
from gateway.web.health import Readiness, healthz, make_readyz

PROXY_HANDLER = web.AppKey("gateway_proxy_handler", object)


def setup_storage(app: web.Application, config: GatewayConfig) -> None:
    """Opens the embedded SQLite database and migrates it (the embedded default migrates itself)."""

    async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
        db = await SqliteDatabase.open(app[keys.STATE].database)
        app[keys.DATABASE] = db

        async def db_ready() -> None:
            await db.fetchone("SELECT 1")

        app[keys.READINESS].add("database", db_ready)
        try:
            yield
        finally:
            await db.close()

    app.cleanup_ctx.append(storage_ctx)


def setup_proxy(app: web.Application, config: GatewayConfig) -> None:
    """The route table, the stage chain and the pooled upstream client."""
    names = config.headers.resolved_names()
    owned = OwnedHeaders(names.values())
    table = RouteTable(config.upstreams)
    app[keys.ROUTES] = table
    chain = build_proxy_chain(
        ChainParts(
            routes=table,
            owned_headers=owned,
            request_id_header=names["request_id"],
            max_header_bytes=config.limits.max_header_bytes,
        )
    )
    app[keys.CHAIN] = chain
    factory = ScopeFactory(TrustedProxies(config.trusted_proxies), names["request_id"])

    async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
        session = await open_upstream_session()
        forwarder = Forwarder(session)
        app[keys.UPSTREAM_SESSION] = session
        app[keys.FORWARDER] = forwarder
        app[PROXY_HANDLER] = make_proxy_handler(factory, chain, forwarder, session)
        try:
            yield
        finally:
            await session.close()

    app.cleanup_ctx.append(upstream_ctx)

    async def proxy(request: web.Request) -> web.StreamResponse:
        handler = request.app[PROXY_HANDLER]
        return await handler(request)  # type: ignore[operator,no-any-return]

    app.router.add_route("*", "/{tail:.*}", proxy)


def setup_gateway_endpoints(app: web.Application) -> None:
    """`/.gateway/*` endpoints served by the gateway itself (registered before the proxy)."""
    app.router.add_get("/.gateway/healthz", healthz)
    app.router.add_get("/.gateway/readyz", make_readyz(app[keys.READINESS]))


def build_app(config: GatewayConfig, state: StateDir | None = None) -> web.Application:
    """The whole gateway as an aiohttp Application, ready for a runner."""
    app = web.Application(client_max_size=1024 * 1024)
    app[keys.CONFIG] = config
    app[keys.STATE] = state or open_state_dir(config.state_dir)
    app[keys.READINESS] = Readiness()
    setup_storage(app, config)
    setup_gateway_endpoints(app)
    setup_proxy(app, config)
    return app
