"""Hosted account pages for browsers: `/.gateway/mfa`, `/.gateway/mfa/enroll`,
`/.gateway/reset`, `/.gateway/reset/confirm`, `/.gateway/verify-email`.

Forms post `application/x-www-form-urlencoded`; signed-in forms pass the CSRF rule (same
origin), anonymous ones `form_origin_ok`; `rd` is only ever a relative path on this host.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from gateway.audit.events import Actor
from gateway.identity.errors import IdentityError
from gateway.identity.principal import Principal
from gateway.sessions.cookies import set_session_cookie
from gateway.sessions.models import SessionRecord
from gateway.web.account_pages import (
    enroll_page,
    enroll_start_page,
    mfa_page,
    reset_confirm_page,
    reset_request_page,
    verify_email_page,
)
from gateway.web.account_services import half_session, services_of
from gateway.web.common import request_context
from gateway.web.csrf import csrf_ok, form_origin_ok
from gateway.web.hosted import TOO_MANY, read_form, see_other
from gateway.web.pages import message_page
from gateway.web.redirects import safe_redirect_target

REFUSED = ("Refused", "cross-site request refused", 403)


def to_login(rd: str) -> web.Response:
    return see_other(f"/.gateway/login?rd={quote(rd, safe='')}")


async def _form(request: web.Request) -> dict[str, str] | web.Response:
    services, _ = services_of(request)
    if not form_origin_ok(request, services.public_origin):
        return message_page(*REFUSED)
    form = await read_form(request)
    return form if form is not None else message_page("Bad request", "unreadable form", 400)


async def _signed_in(request: web.Request) -> Principal | None:
    services, _ = services_of(request)
    found = await services.authenticator.authenticate(request, None)
    return found if isinstance(found, Principal) and found.session is not None else None


async def _signed_in_post(
    request: web.Request,
) -> tuple[Principal, SessionRecord, dict[str, str], str] | web.StreamResponse:
    """A form post of a signed-in user that passed the CSRF rule: (principal, its session,
    form, rd), or the answer to give instead (the login page, or 403 for a cross-site post)."""
    services, _ = services_of(request)
    principal = await _signed_in(request)
    form = await read_form(request)
    rd = safe_redirect_target((form or {}).get("rd"))
    if principal is None or principal.session is None:
        return to_login(rd)
    # SECURITY: a state-changing form needs same-origin proof (CSRF).
    if form is None or not csrf_ok(
        request, principal.session, services.sessions, services.public_origin
    ):
        return message_page(*REFUSED)
    return principal, principal.session, form, rd


async def _mfa_session(request: web.Request) -> tuple[SessionRecord, bool] | None:
    """The session the MFA page works on and whether it is a step-up: the half-session of a
    sign-in, else the full session of a user with MFA on (re-verification before admin
    actions); None when there is neither."""
    services, account = services_of(request)
    record = await half_session(request, services)
    if record is not None:
        return record, False
    principal = await _signed_in(request)
    if principal is None or principal.session is None:
        return None
    return (principal.session, True) if await account.mfa.is_enabled(principal.id) else None


async def mfa_form(request: web.Request) -> web.StreamResponse:
    rd = safe_redirect_target(request.query.get("rd"))
    found = await _mfa_session(request)
    return mfa_page(rd, step_up=found[1]) if found else to_login(rd)


async def mfa_submit(request: web.Request) -> web.StreamResponse:
    """The second sign-in step, or a step-up: 303 to `rd` with the rotated, MFA-verified
    session."""
    services, account = services_of(request)
    form = await _form(request)
    if isinstance(form, web.Response):
        return form
    rd = safe_redirect_target(form.get("rd"))
    found = await _mfa_session(request)
    record, step_up = found if found else (None, False)
    user = await services.identity.user_by_id(record.user_id) if record else None
    if record is None or user is None:
        return to_login(rd)
    # SECURITY: a full session's form post passes the full CSRF rule, not only the login one.
    if step_up and not csrf_ok(request, record, services.sessions, services.public_origin):
        return message_page(*REFUSED)
    scope = services.scope(request)
    if not (await services.limiter.check("mfa", scope.client_ip, user.email)).allowed:
        return mfa_page(rd, TOO_MANY, 429, step_up=step_up)
    ctx = request_context(scope)
    try:
        await account.mfa.verify(user.id, form.get("code", ""), ctx, step_up=step_up)
    except IdentityError as exc:
        await services.limiter.record_failure(user.email)
        return mfa_page(rd, exc.message, exc.status, step_up=step_up)
    await services.limiter.record_success(user.email)
    rotated = await services.sessions.rotate(
        record, Actor("user", user.id), ctx, reason="mfa-step-up" if step_up else "mfa", mfa=True
    )
    if rotated is None:
        return to_login(rd)
    response = see_other(rd)
    set_session_cookie(response, rotated[0], services.cookie)
    return response


async def enroll_form(request: web.Request) -> web.StreamResponse:
    rd = safe_redirect_target(request.query.get("rd"))
    principal = await _signed_in(request)
    if principal is None:
        return to_login(f"/.gateway/mfa/enroll?rd={quote(rd, safe='')}")
    _, account = services_of(request)
    if await account.mfa.is_enabled(principal.id):
        return message_page("Two-step verification", "two-step verification is already on", 200)
    required = bool(set(principal.roles) & set(principal.tenant.require_mfa))
    return enroll_start_page(rd, required)


async def enroll_submit(request: web.Request) -> web.StreamResponse:
    """Creates the secret and shows it with the QR code and recovery codes."""
    posted = await _signed_in_post(request)
    if isinstance(posted, web.StreamResponse):
        return posted
    principal, _session, _form, rd = posted
    services, account = services_of(request)
    user = await services.identity.user_by_id(principal.id)
    if user is None:
        return to_login(rd)
    try:
        enrolment = await account.mfa.enroll(user, request_context(services.scope(request)))
    except IdentityError as exc:
        return message_page("Two-step verification", exc.message, exc.status)
    return enroll_page(rd, enrolment)


async def enroll_confirm(request: web.Request) -> web.StreamResponse:
    """Turns MFA on: other sessions revoked, this one rotated (MFA-verified), 303 to `rd`."""
    posted = await _signed_in_post(request)
    if isinstance(posted, web.StreamResponse):
        return posted
    principal, session, form, rd = posted
    services, account = services_of(request)
    ctx, actor = request_context(services.scope(request)), Actor("user", principal.id)
    try:
        await account.mfa.confirm(principal.id, form.get("code", ""), ctx)
    except IdentityError as exc:
        return enroll_start_page(rd, False, f"{exc.message}; please start again", exc.status)
    rotated = await services.sessions.rotate(session, actor, ctx, reason="mfa-enabled", mfa=True)
    keep = rotated[1].id if rotated else session.id
    await services.sessions.revoke_user(principal.id, actor, ctx, except_id=keep, reason="mfa")
    response = see_other(rd)
    if rotated is not None:
        set_session_cookie(response, rotated[0], services.cookie)
    return response


async def reset_form(request: web.Request) -> web.StreamResponse:
    return reset_request_page()


async def reset_submit(request: web.Request) -> web.StreamResponse:
    services, account = services_of(request)
    form = await _form(request)
    if isinstance(form, web.Response):
        return form
    email, scope = form.get("email", ""), services.scope(request)
    if not (await services.limiter.check("password-reset", scope.client_ip, email)).allowed:
        return reset_request_page(TOO_MANY, 429)
    await account.accounts.request_reset(email, request_context(scope))
    # SECURITY: the same page whether or not the address has an account.
    return message_page(
        "Check your mail", "if the address has an account, a link is on its way", 200
    )


async def reset_confirm_form(request: web.Request) -> web.StreamResponse:
    return reset_confirm_page(request.query.get("token", "")[:64])


async def reset_confirm_submit(request: web.Request) -> web.StreamResponse:
    services, account = services_of(request)
    form = await _form(request)
    if isinstance(form, web.Response):
        return form
    scope, token = services.scope(request), form.get("token", "")[:64]
    if not (await services.limiter.check("password-reset", scope.client_ip)).allowed:
        return reset_confirm_page(token, TOO_MANY, 429)
    ctx = request_context(scope)
    try:
        user = await account.accounts.confirm_reset(token, form.get("password", ""), ctx)
    except IdentityError as exc:
        return reset_confirm_page(token, exc.message, exc.status)
    await services.sessions.revoke_user(user.id, Actor("user", user.id), ctx, reason="reset")
    return see_other("/.gateway/login")


async def verify_email_form(request: web.Request) -> web.StreamResponse:
    return verify_email_page(request.query.get("token", "")[:64])


async def verify_email_submit(request: web.Request) -> web.StreamResponse:
    services, account = services_of(request)
    form = await _form(request)
    if isinstance(form, web.Response):
        return form
    try:
        await account.accounts.verify_email(
            form.get("token", "")[:64], request_context(services.scope(request))
        )
    except IdentityError as exc:
        return message_page("Email address", exc.message, exc.status)
    return message_page("Email address", "thank you: your email address is confirmed", 200)


def setup_account_pages(app: web.Application) -> None:
    """Registers the hosted account pages."""
    app.router.add_get("/.gateway/mfa", mfa_form)
    app.router.add_post("/.gateway/mfa", mfa_submit)
    app.router.add_get("/.gateway/mfa/enroll", enroll_form)
    app.router.add_post("/.gateway/mfa/enroll", enroll_submit)
    app.router.add_post("/.gateway/mfa/enroll/confirm", enroll_confirm)
    app.router.add_get("/.gateway/reset", reset_form)
    app.router.add_post("/.gateway/reset", reset_submit)
    app.router.add_get("/.gateway/reset/confirm", reset_confirm_form)
    app.router.add_post("/.gateway/reset/confirm", reset_confirm_submit)
    app.router.add_get("/.gateway/verify-email", verify_email_form)
    app.router.add_post("/.gateway/verify-email", verify_email_submit)
