"""The composition root: configuration -> stores -> services -> aiohttp Application.

This is the only module that names concrete adapters. Each area registers itself through a
small `setup_<area>()` function; resources are opened in `cleanup_ctx` so they close in
reverse order on shutdown. The proxy chain is built once every service it needs exists.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import ssl
from collections.abc import AsyncIterator

from aiohttp import web
from opentelemetry.sdk.trace.export import SpanExporter
from yarl import URL

from gateway import keys
from gateway.config import GatewayConfig, Upstream
from gateway.front.serve import FastPath
from gateway.identity.assertion import AssertionSigner, issuer_for
from gateway.identity.authn import Authenticator
from gateway.identity.directory import Directory
from gateway.identity.passwords import PasswordHasher
from gateway.identity.service import IdentityService
from gateway.identity.signing_keys import KeyRing
from gateway.keyring import derive_key
from gateway.observability.setup import setup_observability
from gateway.pipeline.chain import ChainParts, build_proxy_chain
from gateway.pipeline.entry import ScopeFactory, make_proxy_handler
from gateway.pipeline.stages.authorize import Authorizer
from gateway.pipeline.stages.upload import content_types_by_route
from gateway.pipeline.stages.webhook import VerifyWebhook
from gateway.policy.authorizer import PolicyAuthorizer
from gateway.policy.defaults import policy_paths
from gateway.policy.engine import PolicyEngine
from gateway.policy.service import TenantRuleService, policy_listener, watch_rule_changes
from gateway.proxy.clientip import TrustedProxies
from gateway.proxy.forward import Forwarder, open_upstream_session
from gateway.proxy.headers import OwnedHeaders
from gateway.proxy.pool import Origin
from gateway.proxy.routes import Route, RouteTable, build_route
from gateway.ratelimit.auth import AuthLimiter
from gateway.ratelimit.factory import is_degraded
from gateway.ratelimit.limiter import RateLimiter
from gateway.secrets.runtime import SECRETS
from gateway.server import without_banner
from gateway.sessions.cookies import cookie_name
from gateway.sessions.service import SessionService
from gateway.storage.factory import Stores, open_stores
from gateway.storage.state import StateDir, ensure_master_key, open_state_dir
from gateway.tls import upstream_contexts
from gateway.web.account_api import setup_account_routes
from gateway.web.admin import setup_admin_api
from gateway.web.admin_tenant import setup_admin_tenant_api
from gateway.web.auth_api import setup_auth_api
from gateway.web.common import AUTH_SERVICES, AuthServices
from gateway.web.forward_auth import FORWARD_AUTH_ROUTE, make_verify_handler
from gateway.web.health import Readiness, healthz, make_readyz
from gateway.web.hosted import setup_hosted_pages
from gateway.web.jwks import setup_jwks
from gateway.web.oidc import JWT_ISSUERS, setup_oidc
from gateway.web.operators import setup_operators
from gateway.web.secrets_api import setup_secrets

PROXY_HANDLER = web.AppKey("gateway_proxy_handler", object)
VERIFY_HANDLER = web.AppKey("gateway_verify_handler", object)
FAST_PATH = web.AppKey("gateway_fast_path", FastPath)
HSTS = web.AppKey("gateway_hsts", str)
"""Set (by `runtime.serve`) on a TLS listener: the Strict-Transport-Security value."""


def forward_auth_route(config: GatewayConfig) -> Route:
    """The route forward-auth decides requests under when no configured upstream matches;
    its name is the assertion's audience."""
    return build_route(Upstream(name=FORWARD_AUTH_ROUTE, url="http://forward-auth.invalid"))


def upstream_tls(config: GatewayConfig) -> dict[Origin, ssl.SSLContext]:
    """Client TLS contexts (custom CA, client certificate) of the upstreams that set `tls`."""
    by_name = upstream_contexts(config.upstreams)
    return {Origin.of(URL(u.url)): by_name[u.name] for u in config.upstreams if u.name in by_name}


def hashing_concurrency() -> int:
    """Argon2 jobs at once: every core but one, so the event loop always has a core."""
    return max(1, (os.cpu_count() or 2) - 1)


def scope_factory(config: GatewayConfig) -> ScopeFactory:
    """How every request gets its id and client address."""
    names = config.headers.resolved_names()
    return ScopeFactory(TrustedProxies(config.trusted_proxies), names["request_id"])


async def open_auth_services(
    app: web.Application, config: GatewayConfig, stores: Stores
) -> AuthServices:
    """Identity, sessions and the caches in front of them, over the configured stores."""
    bus = stores.bus
    app[keys.BUS] = bus
    hasher = PasswordHasher(max_concurrency=hashing_concurrency())
    app[keys.HASHER] = hasher
    identity = IdentityService(stores.identity, hasher)
    master = ensure_master_key(app[keys.STATE])
    sessions = SessionService(
        stores.sessions, bus, config.cookie, derive_key(master, "csrf"),
        cache_ttl=stores.cache_ttl,
    )  # fmt: skip
    directory = Directory(identity, ttl=stores.cache_ttl)
    bus.subscribe(directory.on_change)
    return AuthServices(
        identity=identity,
        sessions=sessions,
        directory=directory,
        authenticator=Authenticator(
            identity, directory, sessions, config.cookie, jwt_issuers=app.get(JWT_ISSUERS)
        ),
        cookie=config.cookie,
        public_origin=config.public_origin,
        scopes=scope_factory(config),
        limiter=AuthLimiter.from_config(
            config.rate_limits, stores.rate_limits, key_secret=derive_key(master, "ratelimit")
        ),
    )


def build_chain_parts(
    config: GatewayConfig,
    services: AuthServices,
    authorizer: Authorizer,
    signer: AssertionSigner | None = None,
    rate_limiter: RateLimiter | None = None,
) -> ChainParts:
    """Everything the proxy chain needs, from the configuration and the services."""
    names = config.headers.resolved_names()
    return ChainParts(
        routes=RouteTable(config.upstreams),
        owned_headers=OwnedHeaders(names.values()),
        header_names=names,
        session_cookie=cookie_name(config.cookie),
        max_header_bytes=config.limits.max_header_bytes,
        tenancy=config.tenancy,
        authenticator=services.authenticator,
        sessions=services.sessions,
        authorizer=authorizer,
        public_origin=config.public_origin,
        signer=signer,
        rate_limiter=rate_limiter,
        upload_types=content_types_by_route(config.upstreams),
    )


def setup_signing(app: web.Application, config: GatewayConfig) -> None:
    """The assertion key ring (following `gateway keys rotate` on disk) and its signer."""
    ring = KeyRing(app[keys.STATE])
    app[keys.SIGNING_KEYS] = ring
    app[keys.ASSERTIONS] = AssertionSigner(ring, issuer_for(config.public_url))


def open_policy(app: web.Application, config: GatewayConfig, stores: Stores) -> PolicyEngine:
    """The Casbin engine over the policy files and the tenants' stored rules."""
    model, rules = policy_paths(config.policy)
    engine = PolicyEngine.from_files(model, rules, store=stores.rules)
    app[keys.POLICY] = engine
    app[keys.TENANT_RULES] = TenantRuleService(stores.rules, engine, stores.bus)
    stores.bus.subscribe(policy_listener(engine))
    return engine


def add_readiness(app: web.Application, stores: Stores) -> None:
    """Stores must answer; Redis and shared rate limits are reported, never blocking."""
    readiness = app[keys.READINESS]
    for name, check in stores.checks.items():
        readiness.add(name, check)
    redis = stores.redis
    if redis is not None:

        async def redis_up() -> None:
            if not await redis.ping():
                raise ConnectionError("redis")

        async def shared_limits() -> None:
            if is_degraded(stores.rate_limits):
                raise ConnectionError("rate limits are per process")

        readiness.add("redis", redis_up, critical=False)
        readiness.add("rate_limits", shared_limits, critical=False)


def setup_proxy_handlers(
    app: web.Application, config: GatewayConfig, parts: ChainParts, forwarder: Forwarder
) -> None:
    """The proxy chain and the forward-auth chain over the same stages."""
    services = app[AUTH_SERVICES]
    chain = build_proxy_chain(parts)
    app[keys.CHAIN] = chain
    app[PROXY_HANDLER] = make_proxy_handler(services.scopes, chain, forwarder, forwarder.session)
    verify = make_verify_handler(
        services.scopes,
        build_proxy_chain(parts, forward_auth_route(config)),
        TrustedProxies(config.trusted_proxies),
        parts.header_names,
        config.forward_auth.decision_cache_seconds,
    )
    app[VERIFY_HANDLER] = verify
    app[FAST_PATH] = FastPath(services.scopes, chain, forwarder, app.get(HSTS), verify)


def setup_services(app: web.Application, config: GatewayConfig) -> None:
    """Opens the stores and services, then builds the proxy chain over them."""

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_stores(config, app[keys.STATE]) as stores:
            app[keys.STORES] = stores
            add_readiness(app, stores)
            services = await open_auth_services(app, config, stores)
            app[AUTH_SERVICES] = services
            engine = open_policy(app, config, stores)
            watchers = [
                asyncio.create_task(engine.watch_files()),
                asyncio.create_task(watch_rule_changes(engine, stores.rules)),
            ]
            session = await open_upstream_session(ssl_by_origin=upstream_tls(config))
            limiter = RateLimiter.from_config(
                config.rate_limits, config.upstreams, stores.rate_limits
            )
            parts = build_chain_parts(
                config, services, PolicyAuthorizer(engine), app[keys.ASSERTIONS], limiter
            )
            if any(u.verify_webhook for u in config.upstreams):  # else no stage at all
                parts = dataclasses.replace(
                    parts, webhooks=VerifyWebhook(config.upstreams, app[SECRETS])
                )
            setup_proxy_handlers(app, config, parts, Forwarder(session))
            try:
                yield
            finally:
                for watcher in watchers:
                    watcher.cancel()
                await session.close()
                services.sessions.close()
                await app[keys.HASHER].close()

    app.cleanup_ctx.append(services_ctx)


def setup_gateway_endpoints(app: web.Application) -> None:
    """`/.gateway/*` endpoints served by the gateway itself (registered before the proxy)."""
    app.router.add_get("/.gateway/healthz", healthz)
    app.router.add_get("/.gateway/readyz", make_readyz(app[keys.READINESS]))
    setup_jwks(app)
    setup_auth_api(app)
    setup_oidc(app)
    setup_hosted_pages(app)
    setup_account_routes(app)
    setup_admin_api(app)
    setup_admin_tenant_api(app)
    setup_operators(app)
    setup_forward_auth(app)
    setup_secrets(app)


def setup_forward_auth(app: web.Application) -> None:
    """`/.gateway/verify`: the same decision for a proxy that forwards on its own."""

    async def verify(request: web.Request) -> web.StreamResponse:
        handler = request.app[VERIFY_HANDLER]
        return await handler(request)  # type: ignore[operator,no-any-return]

    app.router.add_route("GET", "/.gateway/verify", verify)
    app.router.add_route("HEAD", "/.gateway/verify", verify)


def setup_proxy_route(app: web.Application) -> None:
    """The catch-all route: every other path goes through the proxy chain."""

    async def proxy(request: web.Request) -> web.StreamResponse:
        handler = request.app[PROXY_HANDLER]
        return await handler(request)  # type: ignore[operator,no-any-return]

    # [\s\S]: aiohttp matches the decoded path, and "." would not match an encoded newline.
    app.router.add_route("*", r"/{tail:[\s\S]*}", proxy)


def build_app(
    config: GatewayConfig,
    state: StateDir | None = None,
    *,
    span_exporter: SpanExporter | None = None,
) -> web.Application:
    """The whole gateway as an aiohttp Application, ready for a runner.

    `span_exporter` (tests) turns tracing on without an OTLP endpoint."""
    app = without_banner(web.Application(client_max_size=1024 * 1024))
    app[keys.CONFIG] = config
    app[keys.STATE] = state or open_state_dir(config.state_dir)
    app[keys.READINESS] = Readiness()
    setup_signing(app, config)
    setup_services(app, config)
    setup_observability(app, config, exporter=span_exporter)
    setup_gateway_endpoints(app)
    setup_proxy_route(app)
    return app
