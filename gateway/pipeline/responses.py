"""The single place that turns a denial reason into an HTTP response.

Stages never build error responses themselves: they return a `Deny`, and this module maps
its reason to a status and a JSON body `{"error": {"code", "message"}}` (or a redirect to the
login page for a browser that is not signed in). Bodies never echo request data.
"""

from __future__ import annotations

from types import MappingProxyType
from urllib.parse import quote

from aiohttp import web

from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.stages.mfa import MfaEnrollmentRequired, enrollment_response
from gateway.ratelimit.headers import too_many_requests_response
from gateway.ratelimit.limiter import RateLimitedDeny

STATUS_BY_REASON: MappingProxyType[Reason, int] = MappingProxyType(
    {
        Reason.BAD_REQUEST: 400,
        Reason.UNTRUSTED_PROXY: 403,
        Reason.BAD_FRAMING: 400,
        Reason.BAD_PATH: 400,
        Reason.HEADERS_TOO_LARGE: 431,
        Reason.BODY_TOO_LARGE: 413,
        Reason.UNSUPPORTED_MEDIA_TYPE: 415,
        Reason.UPGRADE_REFUSED: 400,
        Reason.ROUTE_UNKNOWN: 404,
        Reason.TENANT_UNKNOWN: 404,
        Reason.TENANT_CONFLICT: 400,
        Reason.NOT_A_MEMBER: 403,
        Reason.FEATURE_DISABLED: 403,
        Reason.UNAUTHENTICATED: 401,
        Reason.SESSION_EXPIRED: 401,
        Reason.CSRF: 403,
        Reason.POLICY_DENY: 403,
        Reason.RATE_LIMITED: 429,
        Reason.STORE_UNAVAILABLE: 503,
        Reason.POLICY_UNAVAILABLE: 503,
        Reason.NOT_IMPLEMENTED: 503,
        Reason.UPSTREAM_UNREACHABLE: 502,
        Reason.UPSTREAM_TIMEOUT: 504,
        Reason.INTERNAL: 500,
    }
)

DEFAULT_MESSAGES: MappingProxyType[Reason, str] = MappingProxyType(
    {
        Reason.BAD_REQUEST: "the request is malformed",
        Reason.UNTRUSTED_PROXY: "forward-auth requests must come from a trusted proxy",
        Reason.BAD_FRAMING: "the request's message framing is malformed or ambiguous",
        Reason.BAD_PATH: "the request path is not acceptable",
        Reason.HEADERS_TOO_LARGE: "the request headers are too large",
        Reason.BODY_TOO_LARGE: "the request body is too large",
        Reason.UNSUPPORTED_MEDIA_TYPE: "the request body's media type is not accepted",
        Reason.UPGRADE_REFUSED: "this protocol upgrade is not supported",
        Reason.ROUTE_UNKNOWN: "no route matches this request",
        Reason.TENANT_UNKNOWN: "unknown tenant",
        Reason.TENANT_CONFLICT: "the request names more than one tenant",
        Reason.NOT_A_MEMBER: "you are not a member of this tenant",
        Reason.FEATURE_DISABLED: "this feature is not enabled for your tenant",
        Reason.UNAUTHENTICATED: "authentication required",
        Reason.SESSION_EXPIRED: "the session has expired",
        Reason.CSRF: "cross-site request refused",
        Reason.POLICY_DENY: "access denied",
        Reason.RATE_LIMITED: "too many requests",
        Reason.STORE_UNAVAILABLE: "a backing store is unavailable; try again shortly",
        Reason.POLICY_UNAVAILABLE: "the policy engine cannot decide; try again shortly",
        Reason.NOT_IMPLEMENTED: "this capability is not available",
        Reason.UPSTREAM_UNREACHABLE: "the upstream could not be reached",
        Reason.UPSTREAM_TIMEOUT: "the upstream did not answer in time",
        Reason.INTERNAL: "internal error",
    }
)

LOGIN_PATH = "/.gateway/login"


def status_for(reason: Reason) -> int:
    """The HTTP status of a reason; every reason has one."""
    return STATUS_BY_REASON[reason]


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The contract's error shape."""
    return {"error": {"code": code, "message": message}}


def json_error(status: int, code: str, message: str) -> web.Response:
    """A JSON error response that never caches."""
    resp = web.json_response(error_body(code, message), status=status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def wants_html(request: web.BaseRequest) -> bool:
    """True for a browser navigation (Accept prefers text/html), not an API client."""
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and request.method in ("GET", "HEAD")


def deny_response(
    request: web.BaseRequest, deny: Deny, target: str | None = None
) -> web.StreamResponse:
    """Map a denial to its response: login redirect for browsers, else JSON.

    `target` is the path to come back to after signing in (default: the request's own).
    """
    if isinstance(deny, RateLimitedDeny):
        return too_many_requests_response(deny.results)
    if isinstance(deny, MfaEnrollmentRequired):
        return enrollment_response(request, deny)
    if deny.reason in (Reason.UNAUTHENTICATED, Reason.SESSION_EXPIRED) and wants_html(request):
        # SECURITY: only the request's own path goes into rd; the login page re-validates it.
        back = request.raw_path if target is None else target
        target = f"{LOGIN_PATH}?rd={quote(back, safe='')}"
        return web.Response(status=302, headers={"Location": target, "Cache-Control": "no-store"})
    message = deny.message or DEFAULT_MESSAGES[deny.reason]
    resp = json_error(status_for(deny.reason), deny.reason.value, message)
    for name, value in deny.headers:
        resp.headers[name] = value
    if deny.reason is Reason.UNAUTHENTICATED:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="gateway"'
    return resp
