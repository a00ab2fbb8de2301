"""The JSON auth API: sign-up, sign-in, sign-out and the current session."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.audit.events import Actor
from gateway.identity.errors import IdentityError
from gateway.identity.models import AuthResult
from gateway.identity.principal import Principal
from gateway.pipeline.responses import json_error
from gateway.sessions.cookies import clear_session_cookie, read_session_token, set_session_cookie
from gateway.sessions.models import AuthMethod, SessionRecord
from gateway.sessions.service import SIGNOUT
from gateway.storage.ports import StoreUnavailable
from gateway.web.account_services import ENROLL_PAGE, signin_gate
from gateway.web.common import (
    AUTH_SERVICES,
    AuthServices,
    BadBody,
    error_response,
    optional_string,
    read_json_object,
    request_context,
    required_string,
    store_guard,
)
from gateway.web.csrf import csrf_ok

INVALID_CREDENTIALS = "invalid email or password"


def with_headers(response: web.Response, headers: list[tuple[str, str]]) -> web.Response:
    """`response` with the rate-limit headers added."""
    for name, value in headers:
        response.headers.add(name, value)
    return response


def auth_view(result: AuthResult) -> dict[str, Any]:
    """The contract's `{user, tenant, roles}` body."""
    return {
        "user": {"id": result.user.id, "email": result.user.email},
        "tenant": {"id": result.tenant.id, "slug": result.tenant.slug},
        "roles": sorted(result.roles),
    }


async def start_session(
    services: AuthServices,
    request: web.Request,
    result: AuthResult,
    response: web.StreamResponse,
    *,
    mfa_pending: bool = False,
    auth_method: AuthMethod = "password",
) -> SessionRecord:
    """Revokes any session the browser presented, issues a new one and sets its cookie
    (a half-session, that only the MFA step accepts, with `mfa_pending`)."""
    scope = services.scope(request)
    old = read_session_token(request, services.cookie)
    if old is not None:
        # SECURITY: session fixation: a presented cookie is never adopted, and is retired.
        await services.sessions.revoke_token(
            old, Actor("user", result.user.id), request_context(scope)
        )
    token, record = await services.sessions.create(
        result.user.id,
        result.tenant.id,
        auth_method=auth_method,
        ip=scope.client_ip,
        user_agent=request.headers.get("User-Agent", "")[:256] or None,
        mfa_pending=mfa_pending,
    )
    set_session_cookie(response, token, services.cookie)
    return record


@store_guard
async def signup(request: web.Request) -> web.StreamResponse:
    """`POST /.gateway/auth/signup`: a new tenant (as its admin), or join by invitation."""
    services = request.app[AUTH_SERVICES]
    scope = services.scope(request)
    ctx = request_context(scope)
    check = await services.limiter.check("signup", scope.client_ip)
    if (refused := check.refusal()) is not None:
        return refused
    try:
        body = await read_json_object(request)
        email = required_string(body, "email")
        password = required_string(body, "password")
        invitation = optional_string(body, "invitation")
        if invitation is not None:
            result = await services.identity.signup_with_invitation(
                email, password, invitation, ctx
            )
        else:
            tenant = required_string(body, "tenant")
            result = await services.identity.signup(email, password, tenant, ctx)
    except (IdentityError, BadBody) as exc:
        return with_headers(error_response(exc), check.headers)
    response = with_headers(web.json_response(auth_view(result), status=201), check.headers)
    await start_session(services, request, result, response)
    return response


@store_guard
async def signin(request: web.Request) -> web.StreamResponse:
    """`POST /.gateway/auth/signin`: one status and body for every failure."""
    services = request.app[AUTH_SERVICES]
    scope = services.scope(request)
    ctx = request_context(scope)
    try:
        body = await read_json_object(request)
        email = required_string(body, "email")
        password = required_string(body, "password")
        tenant = optional_string(body, "tenant")
    except BadBody as exc:
        return error_response(exc)
    # SECURITY: brute force: per-IP and per-account budgets, growing delays after failures.
    check = await services.limiter.check("signin", scope.client_ip, email)
    if (refused := check.refusal()) is not None:
        return refused
    result = await services.identity.signin(email, password, tenant, ctx)
    if result is None:
        await services.limiter.record_failure(email)
        # SECURITY: the same status, body and (dummy-hash) time whether or not the email exists.
        return with_headers(
            json_error(401, "invalid-credentials", INVALID_CREDENTIALS), check.headers
        )
    await services.limiter.record_success(email)
    gate = await signin_gate(request.app, result)
    if gate == "mfa":
        # SECURITY: the password alone earns a half-session that reaches only the MFA step.
        response = with_headers(web.json_response({"mfa_required": True}), check.headers)
        await start_session(services, request, result, response, mfa_pending=True)
        return response
    view = auth_view(result)
    if gate == "enroll":
        view |= {"mfa_enrollment_required": True, "enroll": ENROLL_PAGE}
    response = with_headers(web.json_response(view), check.headers)
    await start_session(services, request, result, response)
    return response


@store_guard
async def signout(request: web.Request) -> web.StreamResponse:
    """`POST /.gateway/auth/signout`: revokes the session everywhere and clears the cookie."""
    services = request.app[AUTH_SERVICES]
    scope = services.scope(request)
    token = read_session_token(request, services.cookie)
    record = await services.sessions.authenticate(token) if token else None
    if record is not None:
        # SECURITY: a cross-site page must not be able to sign the user out (CSRF).
        if not csrf_ok(request, record, services.sessions, services.public_origin):
            return json_error(403, "csrf", "cross-site request refused")
        await services.sessions.revoke(
            record.id,
            Actor("user", record.user_id),
            request_context(scope),
            tenant_id=record.tenant_id,
            reason=SIGNOUT,
        )
    response = web.Response(status=204)
    clear_session_cookie(response, services.cookie)
    return response


async def session_info(request: web.Request) -> web.StreamResponse:
    """`GET /.gateway/auth/session`: the current session, its user, tenant and roles."""
    services = request.app[AUTH_SERVICES]
    try:
        principal = await services.authenticator.authenticate(request, None)
    except StoreUnavailable:
        return json_error(503, "store-unavailable", "a backing store is unavailable")
    if not isinstance(principal, Principal) or principal.session is None:
        return json_error(401, "unauthenticated", "authentication required")
    record = principal.session
    response = web.json_response(
        {
            "session": record.public_view(),
            "user": {"id": principal.id, "email": principal.email},
            "tenant": {"id": principal.tenant.id, "slug": principal.tenant.slug},
            "roles": sorted(principal.roles),
        }
    )
    response.headers["X-CSRF-Token"] = services.sessions.csrf_token(record)
    if principal.new_token is not None:
        set_session_cookie(response, principal.new_token, services.cookie)
    response.headers["Cache-Control"] = "no-store"
    return response


def setup_auth_api(app: web.Application) -> None:
    """Registers the auth API routes."""
    app.router.add_post("/.gateway/auth/signup", signup)
    app.router.add_post("/.gateway/auth/signin", signin)
    app.router.add_post("/.gateway/auth/signout", signout)
    app.router.add_get("/.gateway/auth/session", session_info)
