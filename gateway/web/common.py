"""What the gateway's own handlers share: services, JSON bodies, request context."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.audit.events import RequestContext
from gateway.config import CookieConfig
from gateway.identity.authn import Authenticator
from gateway.identity.directory import Directory
from gateway.identity.errors import IdentityError
from gateway.identity.service import IdentityService
from gateway.pipeline.entry import ScopeFactory
from gateway.pipeline.responses import json_error
from gateway.pipeline.scope import SCOPE_KEY, RequestScope
from gateway.ratelimit.auth import AuthLimiter
from gateway.sessions.service import SessionService
from gateway.storage.ports import StoreUnavailable
from gateway.web.pages import message_page

MAX_JSON_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class AuthServices:
    """The identity and session services the `/.gateway/*` handlers use."""

    identity: IdentityService
    sessions: SessionService
    directory: Directory
    authenticator: Authenticator
    cookie: CookieConfig
    public_origin: str | None
    scopes: ScopeFactory
    limiter: AuthLimiter

    def scope(self, request: web.Request) -> RequestScope:
        """The request's scope (id, client IP through trusted proxies), created once."""
        existing = request.get(SCOPE_KEY)
        return existing if existing is not None else self.scopes.create(request)


AUTH_SERVICES = web.AppKey("gateway_auth_services", AuthServices)


class BadBody(Exception):
    """The request body is not the JSON object (or form) the endpoint needs."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, bounded in size; raises BadBody (400/413/415)."""
    if request.content_type != "application/json":
        # SECURITY: a cross-site HTML form cannot send application/json without CORS preflight.
        raise BadBody("the body must be application/json", 415)
    if (request.content_length or 0) > MAX_JSON_BYTES:
        raise BadBody("the body is too large", 413)
    raw = await request.content.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise BadBody("the body is too large", 413)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # SECURITY: deeply nested JSON must be a 400, not a crash.
        raise BadBody("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadBody("the body must be a JSON object")
    return body


def required_string(body: dict[str, Any], name: str) -> str:
    """A string member of a JSON body; raises BadBody (422) when missing or mistyped."""
    value = body.get(name)
    if not isinstance(value, str):
        raise BadBody(f"`{name}` must be a string", 422)
    return value


def optional_string(body: dict[str, Any], name: str) -> str | None:
    """A string member of a JSON body, or None when absent; BadBody (422) when mistyped."""
    return None if body.get(name) is None else required_string(body, name)


def request_context(scope: RequestScope) -> RequestContext:
    """Where a request came from, for audit: client IP, user agent (bounded), request id."""
    return RequestContext(
        ip=scope.client_ip,
        user_agent=scope.request.headers.get("User-Agent", "")[:256] or None,
        request_id=scope.request_id,
    )


def error_response(exc: IdentityError | BadBody) -> web.Response:
    """The contract's error body for a refused identity operation or a bad body."""
    if isinstance(exc, BadBody):
        code = {415: "unsupported-media-type", 413: "body-too-large"}.get(exc.status, "bad-request")
        return json_error(exc.status, code, exc.message)
    return json_error(exc.status, exc.code, exc.message)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def store_guard(handler: Handler) -> Handler:
    """Answers 503 (JSON, or a page for form posts) when a store cannot be reached.

    SECURITY: fail closed and say so plainly, never a 500 with internal detail.
    """

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except StoreUnavailable:
            if request.content_type == "application/x-www-form-urlencoded" or (
                request.method == "GET" and "text/html" in request.headers.get("Accept", "")
            ):
                return message_page("Unavailable", "please try again in a moment", 503)
            return json_error(503, "store-unavailable", "a backing store is unavailable")

    return guarded
