"""The CSRF rule for cookie-authenticated, state-changing requests.

Such a request must carry an `Origin` (or, without one, a `Referer`) of the gateway's own
origin, or a valid `X-CSRF-Token` bound to the session. A bearer-authenticated request is not
subject to it: a browser never attaches an API key by itself.
"""

from __future__ import annotations

from aiohttp import web

from gateway.sessions.models import SessionRecord
from gateway.sessions.service import SessionService
from gateway.web.origin import request_origin, same_origin_request

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"


def allowed_origins(
    request: web.BaseRequest, public_origin: str | None, host: str | None = None
) -> frozenset[str]:
    """The origins a same-origin request may come from: `public_url`, else the request's own
    (`host` overrides the request's Host: forward-auth checks the original request's)."""
    if public_origin is not None:
        return frozenset({public_origin})
    own = request_origin(request.scheme, host or request.host)
    return frozenset({own}) if own else frozenset()


def _single(request: web.BaseRequest, name: str) -> tuple[bool, str | None]:
    values = request.headers.getall(name, [])
    return len(values) <= 1, values[0] if values else None


def csrf_ok(
    request: web.BaseRequest,
    record: SessionRecord,
    sessions: SessionService,
    public_origin: str | None,
    method: str | None = None,
    host: str | None = None,
) -> bool:
    """True when a cookie-authenticated request may change state (see the module docstring).

    `method` overrides the request's own (forward-auth checks the original request's).
    """
    if (method or request.method) in SAFE_METHODS:
        return True
    ok_token, token = _single(request, CSRF_HEADER)
    if ok_token and token is not None and sessions.check_csrf(record, token):
        return True
    ok_origin, origin = _single(request, "Origin")
    ok_referer, referer = _single(request, "Referer")
    # SECURITY: repeated Origin/Referer headers are ambiguous; refuse rather than pick one.
    if not (ok_origin and ok_referer):
        return False
    return same_origin_request(origin, referer, allowed_origins(request, public_origin, host))


def form_origin_ok(request: web.BaseRequest, public_origin: str | None) -> bool:
    """For unauthenticated form posts (login, sign-up): refuse a cross-site Origin/Referer.

    A request without either header (a non-browser client) passes: login CSRF needs a browser,
    and browsers send `Origin` on cross-site POSTs.
    """
    ok_origin, origin = _single(request, "Origin")
    ok_referer, referer = _single(request, "Referer")
    if not (ok_origin and ok_referer):
        return False
    if origin is None and referer is None:
        return True
    # SECURITY: login CSRF would sign the victim into the attacker's account.
    return same_origin_request(origin, referer, allowed_origins(request, public_origin))
