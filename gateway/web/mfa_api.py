"""The JSON MFA API: enrol, confirm, the sign-in step (and step-up), disable, status.

`POST /.gateway/auth/mfa` is the only endpoint a half-session reaches; every other one needs
a full session and passes the CSRF rule. The same endpoint on a full session (CSRF-checked)
re-verifies it: step-up, which admin actions of users with MFA on need within
`mfa.step_up_seconds`. Successful steps rotate the session token and record when the code
was proven (`SessionRecord.mfa_at`).
"""

from __future__ import annotations

from aiohttp import web

from gateway.audit.events import Actor, RequestContext
from gateway.identity.errors import IdentityError
from gateway.identity.models import AuthResult, User
from gateway.identity.principal import Principal
from gateway.pipeline.responses import json_error
from gateway.sessions.cookies import set_session_cookie
from gateway.sessions.models import SessionRecord
from gateway.web.account_services import current_principal, half_session, services_of
from gateway.web.auth_api import auth_view, with_headers
from gateway.web.common import (
    AuthServices,
    BadBody,
    error_response,
    read_json_object,
    request_context,
    required_string,
)

NO_STORE = {"Cache-Control": "no-store"}


async def enroll(request: web.Request) -> web.StreamResponse:
    """`POST /.gateway/auth/mfa/enroll`: a secret, its URI and recovery codes, shown once."""
    services, account = services_of(request)
    principal = await current_principal(request, services)
    if isinstance(principal, web.Response):
        return principal
    user = await services.identity.user_by_id(principal.id)
    if user is None:
        return json_error(401, "unauthenticated", "authentication required")
    try:
        enrolment = await account.mfa.enroll(user, request_context(services.scope(request)))
    except IdentityError as exc:
        return error_response(exc)
    body = {
        "secret": enrolment.secret,
        "otpauth_uri": enrolment.otpauth_uri,
        "recovery_codes": list(enrolment.recovery_codes),
    }
    return web.json_response(body, headers=NO_STORE)


async def confirm(request: web.Request) -> web.StreamResponse:
    """`POST /.gateway/auth/mfa/confirm {code}`: MFA on; other sessions revoked, this one
    rotated and marked as MFA-verified."""
    services, account = services_of(request)
    principal = await current_principal(request, services)
    if isinstance(principal, web.Response):
        return principal
    assert principal.session is not None
    ctx = request_context(services.scope(request))
    try:
        code = required_string(await read_json_object(request), "code")
        await account.mfa.confirm(principal.id, code, ctx)
    except (IdentityError, BadBody) as exc:
        return error_response(exc)
    actor = Actor("user", principal.id)
    rotated = await services.sessions.rotate(
        principal.session, actor, ctx, reason="mfa-enabled", mfa=True
    )
    keep = rotated[1].id if rotated else principal.session.id
    # SECURITY: sessions opened with the password alone must not outlive turning MFA on.
    await services.sessions.revoke_user(principal.id, actor, ctx, except_id=keep, reason="mfa")
    response = web.json_response({"mfa": True}, headers=NO_STORE)
    if rotated is not None:
        set_session_cookie(response, rotated[0], services.cookie)
    return response


async def step(request: web.Request) -> web.StreamResponse:
    """`POST /.gateway/auth/mfa {code}`: upgrades the half-session, or re-verifies a full
    session (step-up); either way the session gets a new token and a fresh `mfa_at`."""
    services, account = services_of(request)
    record = await half_session(request, services)
    step_up = record is None
    if record is None:
        principal = await current_principal(request, services)
        if isinstance(principal, web.Response):
            return principal
        # SECURITY: step-up needs a code like sign-in does (same replay protection, same
        # budgets); the session alone proves nothing new.
        record = principal.session
        assert record is not None
    scope = services.scope(request)
    user = await services.identity.user_by_id(record.user_id)
    if user is None:
        return json_error(401, "unauthenticated", "sign in with your password first")
    # SECURITY: brute force of 6 digits: per-IP and per-account budgets and penalties.
    check = await services.limiter.check("mfa", scope.client_ip, user.email)
    if (refused := check.refusal()) is not None:
        return refused
    ctx = request_context(scope)
    try:
        code = required_string(await read_json_object(request), "code")
        method = await account.mfa.verify(user.id, code, ctx, step_up=step_up)
    except (IdentityError, BadBody) as exc:
        if isinstance(exc, IdentityError):
            await services.limiter.record_failure(user.email)
        return with_headers(error_response(exc), check.headers)
    await services.limiter.record_success(user.email)
    reason = f"mfa-step-up-{method}" if step_up else f"mfa-{method}"
    return with_headers(await _upgrade(services, record, user, reason, ctx), check.headers)


async def _upgrade(
    services: AuthServices, record: SessionRecord, user: User, reason: str, ctx: RequestContext
) -> web.Response:
    """Rotates the session into a full, MFA-verified one (verified now) and answers like
    sign-in. A half-session starts its full lifetime; a full one keeps its deadline."""
    # SECURITY: a new token whenever the session gains assurance, as at any privilege change.
    rotated = await services.sessions.rotate(
        record, Actor("user", user.id), ctx, reason=reason, mfa=True
    )
    found = await services.authenticator.from_session(rotated[1], None) if rotated else None
    if rotated is None or not isinstance(found, Principal):
        return json_error(401, "unauthenticated", "sign in with your password first")
    view = auth_view(AuthResult(user, found.tenant, found.roles))
    response = web.json_response(view, headers=NO_STORE)
    set_session_cookie(response, rotated[0], services.cookie)
    return response


async def disable(request: web.Request) -> web.StreamResponse:
    """`POST /.gateway/auth/mfa/disable {code}`: MFA off; it takes a current code."""
    services, account = services_of(request)
    principal = await current_principal(request, services)
    if isinstance(principal, web.Response):
        return principal
    # SECURITY: a role the tenant requires MFA for cannot switch it off.
    if set(principal.roles) & set(principal.tenant.require_mfa):
        return json_error(403, "mfa-required", "your role in this tenant requires MFA")
    scope = services.scope(request)
    check = await services.limiter.check("mfa", scope.client_ip, principal.email)
    if (refused := check.refusal()) is not None:
        return refused
    try:
        code = required_string(await read_json_object(request), "code")
        await account.mfa.disable(principal.id, code, request_context(scope))
    except (IdentityError, BadBody) as exc:
        return with_headers(error_response(exc), check.headers)
    return with_headers(web.json_response({"mfa": False}, headers=NO_STORE), check.headers)


async def status(request: web.Request) -> web.StreamResponse:
    """`GET /.gateway/auth/mfa`: whether MFA is on and how many recovery codes are left."""
    services, account = services_of(request)
    principal = await current_principal(request, services)
    if isinstance(principal, web.Response):
        return principal
    enabled = await account.mfa.is_enabled(principal.id)
    left = await account.mfa.recovery_codes_left(principal.id) if enabled else 0
    return web.json_response({"enabled": enabled, "recovery_codes_left": left}, headers=NO_STORE)


def setup_mfa_api(app: web.Application) -> None:
    """Registers the MFA routes."""
    app.router.add_get("/.gateway/auth/mfa", status)
    app.router.add_post("/.gateway/auth/mfa", step)
    app.router.add_post("/.gateway/auth/mfa/enroll", enroll)
    app.router.add_post("/.gateway/auth/mfa/confirm", confirm)
    app.router.add_post("/.gateway/auth/mfa/disable", disable)
