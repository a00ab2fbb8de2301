"""Forward-auth mode: `/.gateway/verify` for nginx `auth_request`, Traefik `ForwardAuth` and
Caddy `forward_auth`.

The proxy in front asks whether its original request may pass. The original method, URI and
host are read from `X-Forwarded-Method`, `X-Original-URI` / `X-Forwarded-Uri` and
`X-Forwarded-Host`, and only when the asking peer is a trusted proxy. When both URI headers
are present they must agree: each proxy sets one of them and passes the client's copy of the
other along (`original_uri`). The answer runs the very same stages as a proxied request: 200
with the identity headers (and the assertion) to copy upstream, or the denial (401, 403, 429,
503). nginx treats any answer but 2xx/401/403 as an error, so when it asks (`X-Original-URI`)
an unauthenticated browser gets 401 and nginx's `error_page 401` sends it to the login page;
Caddy and Traefik pass the answer on, so theirs gets the redirect itself.

With `forward_auth.decision_cache_seconds` > 0 every answer says how long the proxy may reuse
it (`X-Accel-Expires`, which nginx's `proxy_cache` obeys; 0 for every answer that must not be
reused; see `decision_lifetime`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.identity.directory import API_KEY_CACHE_SECONDS
from gateway.identity.signing_keys import ASSERTION_LIFETIME
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
CACHE_LIFETIME_HEADER = "X-Accel-Expires"
"""How long nginx's `proxy_cache` may keep an answer, in seconds (0: not at all); it takes
precedence over `Cache-Control` there."""
REUSABLE_METHODS = frozenset({"GET", "HEAD"})
ASSERTION_MARGIN = 10
"""Seconds of validity a reused assertion must still have when the proxy last uses it."""


def _one(request: web.Request, name: str) -> str | None:
    values = request.headers.getall(name, [])
    if len(values) > 1:
        raise ValueError(f"more than one {name} header")
    return values[0] if values else None


def original_uri(request: web.Request) -> str | None:
    """The original request's URI from `X-Original-URI` or `X-Forwarded-Uri` (None: neither);
    ValueError when either is repeated or both are present and differ."""
    found = {v for v in (_one(request, name) for name in URI_HEADERS) if v is not None}
    # SECURITY: nginx sets X-Original-URI, Caddy and Traefik set X-Forwarded-Uri, and each
    # passes a client's copy of the other through: preferring either one would let a client
    # name a public URI while the proxy serves a protected one.
    if len(found) > 1:
        raise ValueError("X-Original-URI and X-Forwarded-Uri disagree")
    return found.pop() if found else None


def adopt_original_request(scope: RequestScope, trusted: TrustedProxies) -> Deny | None:
    """Sets the scope's method, target and host to the original request's; or refuses."""
    request = scope.request
    # SECURITY: anyone else could claim any method and URI and harvest identity headers.
    if not trusted.trusts(request.remote or ""):
        return Deny(Reason.UNTRUSTED_PROXY)
    try:
        uri = original_uri(request)
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


def decision_lifetime(scope: RequestScope, limit: int, now: float) -> int:
    """Whole seconds (at most `limit`) for which the proxy in front may answer requests with
    the same method, scheme, host, URI, credentials and client as this allowed one from this
    answer.

    0 (ask every time) when the answer carries anything meant for this request alone (a
    rotated session cookie, rate-limit fields: a limited route must count every request),
    for a method other than GET and HEAD, and for a credential whose end is not known here
    (an external JWT). Otherwise at most what is left of the session (idle and absolute
    expiry) and of the assertion's validity, and 1 s for an API key.
    """
    # SECURITY: reused answers skip the whole chain: every case where a skipped check could
    # come out differently within `limit` seconds, other than a change an operator makes, is 0.
    if limit <= 0 or scope.method not in REUSABLE_METHODS or scope.response_headers:
        return 0
    lifetime = min(limit, ASSERTION_LIFETIME - ASSERTION_MARGIN)
    principal = scope.principal
    if principal is None:
        return lifetime  # a public route: the answer depends on no credential
    if principal.session is not None:
        return max(0, min(lifetime, int(principal.session.idle_expires_at - now)))
    if principal.key_id is not None:
        # An API key's expiry is not on its principal: held to the directory's bound for it.
        return min(lifetime, API_KEY_CACHE_SECONDS)
    return 0


def mark_reuse(response: web.StreamResponse, lifetime: int | None) -> None:
    """Tells the proxy whether it may reuse `response` (None: decision caching is off)."""
    if lifetime is None:
        response.headers["Cache-Control"] = "no-store"
        return
    response.headers[CACHE_LIFETIME_HEADER] = str(lifetime)
    if lifetime == 0:
        response.headers["Cache-Control"] = "no-store"


def make_verify_handler(
    factory: ScopeFactory,
    chain: tuple[Stage, ...],
    trusted: TrustedProxies,
    names: dict[str, str],
    decision_cache_seconds: int = 0,
    clock: Callable[[], float] = time.time,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The `/.gateway/verify` handler over the forward-auth chain; its answers may be reused
    by the proxy for up to `decision_cache_seconds` (`decision_lifetime`)."""
    caching = decision_cache_seconds > 0

    async def verify(request: web.Request) -> web.StreamResponse:
        scope = factory.create(request)
        deny = adopt_original_request(scope, trusted)
        for stage in chain:
            if deny is not None:
                break
            deny = await stage(scope)
        if deny is not None:
            refusal = _refusal(request, scope, deny)
            if caching:
                refusal.headers[CACHE_LIFETIME_HEADER] = "0"
            return refusal
        response = web.Response(status=200, headers=verified_headers(scope, names))
        lifetime = decision_lifetime(scope, decision_cache_seconds, clock()) if caching else None
        mark_reuse(response, lifetime)
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
