"""The JSON account API: password change and reset, e-mail verification; and
`setup_account_routes`, which registers these, the MFA API and the hosted account pages.

No endpoint tells whether an address is registered: a reset request answers 202 with the
same body for every address. A password change or reset revokes the user's other sessions.
"""

from __future__ import annotations

from aiohttp import web

from gateway.audit.events import Actor
from gateway.identity.errors import IdentityError
from gateway.pipeline.responses import json_error
from gateway.web.account_hosted import setup_account_pages
from gateway.web.account_services import (
    current_principal,
    open_account_services,
    services_of,
)
from gateway.web.auth_api import with_headers
from gateway.web.common import (
    BadBody,
    error_response,
    read_json_object,
    request_context,
    required_string,
)
from gateway.web.mfa_api import setup_mfa_api

ACCEPTED = {
    "status": "accepted",
    "message": "if the address has an account, a message is on its way",
}


async def password_change(request: web.Request) -> web.StreamResponse:
    """`POST /.gateway/auth/password/change {current_password, new_password}`."""
    services, account = services_of(request)
    principal = await current_principal(request, services)
    if isinstance(principal, web.Response):
        return principal
    assert principal.session is not None
    scope = services.scope(request)
    check = await services.limiter.check("signin", scope.client_ip, principal.email)
    if (refused := check.refusal()) is not None:
        return refused
    ctx = request_context(scope)
    try:
        body = await read_json_object(request)
        current = required_string(body, "current_password")
        new = required_string(body, "new_password")
        await account.accounts.change_password(principal.id, current, new, ctx)
    except (IdentityError, BadBody) as exc:
        return with_headers(error_response(exc), check.headers)
    # SECURITY: whoever knew the old password is signed out everywhere but here.
    await services.sessions.revoke_user(
        principal.id, Actor("user", principal.id), ctx, except_id=principal.session.id,
        reason="password-change",
    )  # fmt: skip
    return with_headers(web.json_response({"status": "changed"}), check.headers)


async def reset_request(request: web.Request) -> web.StreamResponse:
    """`POST /.gateway/auth/password/reset/request {email}`: 202 whatever the address."""
    services, account = services_of(request)
    scope = services.scope(request)
    try:
        email = required_string(await read_json_object(request), "email")
    except BadBody as exc:
        return error_response(exc)
    # SECURITY: mail bombing and enumeration by volume: per-IP and per-address budgets.
    check = await services.limiter.check("password-reset", scope.client_ip, email)
    if (refused := check.refusal()) is not None:
        return refused
    await account.accounts.request_reset(email, request_context(scope))
    return with_headers(web.json_response(ACCEPTED, status=202), check.headers)


async def reset_confirm(request: web.Request) -> web.StreamResponse:
    """`POST /.gateway/auth/password/reset/confirm {token, password}`: every session of the
    user is revoked."""
    services, account = services_of(request)
    scope = services.scope(request)
    check = await services.limiter.check("password-reset", scope.client_ip)
    if (refused := check.refusal()) is not None:
        return refused
    ctx = request_context(scope)
    try:
        body = await read_json_object(request)
        token = required_string(body, "token")
        password = required_string(body, "password")
        user = await account.accounts.confirm_reset(token, password, ctx)
    except (IdentityError, BadBody) as exc:
        return with_headers(error_response(exc), check.headers)
    # SECURITY: a reset means the old password may be known: end every session of the user.
    await services.sessions.revoke_user(user.id, Actor("user", user.id), ctx, reason="reset")
    await services.limiter.record_success(user.email)
    return with_headers(web.json_response({"status": "reset"}), check.headers)


async def email_verify(request: web.Request) -> web.StreamResponse:
    """`POST /.gateway/auth/email/verify {token}`: marks the address verified."""
    services, account = services_of(request)
    scope = services.scope(request)
    try:
        token = required_string(await read_json_object(request), "token")
        user = await account.accounts.verify_email(token, request_context(scope))
    except (IdentityError, BadBody) as exc:
        return error_response(exc)
    return web.json_response({"user": {"id": user.id, "email": user.email}, "verified": True})


async def email_verify_request(request: web.Request) -> web.StreamResponse:
    """`POST /.gateway/auth/email/verify/request`: mails the signed-in user a link."""
    services, account = services_of(request)
    principal = await current_principal(request, services)
    if isinstance(principal, web.Response):
        return principal
    scope = services.scope(request)
    check = await services.limiter.check("password-reset", scope.client_ip, principal.email)
    if (refused := check.refusal()) is not None:
        return refused
    user = await services.identity.user_by_id(principal.id)
    if user is None:
        return json_error(401, "unauthenticated", "authentication required")
    if user.email_verified:
        return web.json_response({"status": "verified"})
    await account.accounts.request_verification(user, request_context(scope))
    return with_headers(web.json_response({"status": "sent"}, status=202), check.headers)


def setup_account_routes(app: web.Application) -> None:
    """Registers the MFA and account API and the hosted account pages, and opens their
    services once the stores are open (call it after `setup_services`, before the proxy)."""
    app.cleanup_ctx.append(open_account_services)
    setup_mfa_api(app)
    app.router.add_post("/.gateway/auth/password/change", password_change)
    app.router.add_post("/.gateway/auth/password/reset/request", reset_request)
    app.router.add_post("/.gateway/auth/password/reset/confirm", reset_confirm)
    app.router.add_post("/.gateway/auth/email/verify", email_verify)
    app.router.add_post("/.gateway/auth/email/verify/request", email_verify_request)
    setup_account_pages(app)
