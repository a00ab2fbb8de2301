"""Forward-auth mode: `/.gateway/verify` for nginx `auth_request`, Traefik `ForwardAuth` and
Caddy `forward_auth`.

The proxy in front asks whether its original request may pass. The original method, URI and
host are read from `X-Forwarded-Method`, `X-Original-URI` / `X-Forwarded-Uri` and
`X-Forwarded-Host`, and only when the asking peer is a trusted proxy. The answer runs the very
same stages as a proxied request: 200 with the identity headers (and the assertion) to copy
upstream, or the denial (401, 403, 429, 503). nginx treats any answer but 2xx/401/403 as an
error, so when it asks (`X-Original-URI`) an unauthenticated browser gets 401 and nginx's
`error_page 401` sends it to the login page.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.pipeline.entry import ScopeFactory
from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.responses import deny_response, json_error
from gateway.pipeline.scope import RequestScope
from gateway.pipeline.stages.base import Stage
from gateway.proxy.clientip import TrustedProxies

METHOD_RE = re.compile(r"[A-Z]{1,16}")
URI_HEADERS = ("X-Original-URI", "X-Forwarded-Uri")
NGINX_URI_HEADER = "X-Original-URI"
FORWARD_AUTH_ROUTE = "forward-auth"


def _one(request: web.Request, name: str) -> str | None:
    values = request.headers.getall(name, [])
    if len(values) > 1:
        raise ValueError(f"more than one {name} header")
    return values[0] if values else None


def adopt_original_request(scope: RequestScope, trusted: TrustedProxies) -> Deny | None:
    """Sets the scope's method, target and host to the original request's; or refuses."""
    request = scope.request
    # SECURITY: anyone else could claim any method and URI and harvest identity headers.
    if not trusted.trusts(request.remote or ""):
        return Deny(Reason.UNTRUSTED_PROXY)
    try:
        uri = next((v for v in (_one(request, h) for h in URI_HEADERS) if v is not None), None)
        method = (_one(request, "X-Forwarded-Method") or "GET").upper()
        host = _one(request, "X-Forwarded-Host") or request.host
    except ValueError as exc:
        return Deny(Reason.BAD_REQUEST, str(exc))
    if uri is None or not uri.startswith("/"):
        return Deny(Reason.BAD_REQUEST, "X-Original-URI or X-Forwarded-Uri must hold the path")
    if not METHOD_RE.fullmatch(method):
        return Deny(Reason.BAD_REQUEST, "X-Forwarded-Method is not a method")
    scope.method, scope.target, scope.host = method, uri, host
    return None


def verified_headers(scope: RequestScope, names: dict[str, str]) -> dict[str, str]:
    """Every identity header, with the value the stages set or empty.

    SECURITY: an absent header would let the proxy pass the client's own copy through
    (Traefik's authResponseHeaders only overwrites what the answer contains).
    """
    have = scope.upstream_headers
    return {name: have.get(name, "") for name in names.values()}


def make_verify_handler(
    factory: ScopeFactory,
    chain: tuple[Stage, ...],
    trusted: TrustedProxies,
    names: dict[str, str],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The `/.gateway/verify` handler over the forward-auth chain."""

    async def verify(request: web.Request) -> web.StreamResponse:
        scope = factory.create(request)
        deny = adopt_original_request(scope, trusted)
        for stage in chain:
            if deny is not None:
                break
            deny = await stage(scope)
        if deny is not None:
            return _refusal(request, scope, deny)
        response = web.Response(status=200, headers=verified_headers(scope, names))
        response.headers["Cache-Control"] = "no-store"
        for name, value in scope.response_headers:
            response.headers.add(name, value)
        return response

    return verify


def _refusal(request: web.Request, scope: RequestScope, deny: Deny) -> web.StreamResponse:
    if NGINX_URI_HEADER in request.headers and deny.reason is Reason.UNAUTHENTICATED:
        return json_error(401, deny.reason.value, "authentication required")
    response = deny_response(request, deny, scope.target)
    response.headers["X-Request-Id"] = scope.request_id
    return response
