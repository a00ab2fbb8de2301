"""Hosted pages for browsers: /.gateway/login, /.gateway/signup, /.gateway/logout.

They work without JavaScript: forms post `application/x-www-form-urlencoded`, success sets
the session cookie and redirects (303) to `rd`, which is only ever a relative path on this
host. Failures re-render the form with one generic message.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from gateway.audit.events import Actor
from gateway.identity.errors import IdentityError
from gateway.sessions.cookies import clear_session_cookie, read_session_token
from gateway.sessions.service import SIGNOUT
from gateway.web.account_services import ENROLL_PAGE, MFA_PAGE, signin_gate
from gateway.web.auth_api import INVALID_CREDENTIALS, start_session, with_headers
from gateway.web.common import AUTH_SERVICES, request_context, store_guard
from gateway.web.csrf import csrf_ok, form_origin_ok
from gateway.web.pages import login_page, logout_page, message_page, signup_page
from gateway.web.redirects import safe_redirect_target

MAX_FORM_BYTES = 16 * 1024
TOO_MANY = "too many attempts; wait a moment and try again"


def see_other(location: str) -> web.Response:
    """A 303 redirect that is never cached (Location is a vetted relative path)."""
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


async def read_form(request: web.Request) -> dict[str, str] | None:
    """The form fields (first value of each), or None when the body is not a small form."""
    if request.content_type != "application/x-www-form-urlencoded":
        return None
    if (request.content_length or 0) > MAX_FORM_BYTES:
        return None
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def login_form(request: web.Request) -> web.StreamResponse:
    """`GET /.gateway/login?rd=`: the form."""
    return login_page(safe_redirect_target(request.query.get("rd")))


@store_guard
async def login_submit(request: web.Request) -> web.StreamResponse:
    """`POST /.gateway/login`: sign in and redirect to `rd` (303), or show the form again."""
    services = request.app[AUTH_SERVICES]
    if not form_origin_ok(request, services.public_origin):
        return message_page("Refused", "cross-site request refused", 403)
    form = await read_form(request)
    if form is None:
        return message_page("Bad request", "the form could not be read", 400)
    # SECURITY: open redirect: rd is only ever a relative path on this host.
    rd = safe_redirect_target(form.get("rd"))
    email = form.get("email", "")
    scope = services.scope(request)
    # SECURITY: the form shares the JSON sign-in's budgets (same endpoint name).
    check = await services.limiter.check("signin", scope.client_ip, email)
    if not check.allowed:
        return with_headers(login_page(rd, TOO_MANY, email=email[:254], status=429), check.headers)
    result = await services.identity.signin(
        email, form.get("password", ""), None, request_context(scope)
    )
    if result is None:
        await services.limiter.record_failure(email)
        page = login_page(rd, INVALID_CREDENTIALS, email=email[:254], status=401)
        return with_headers(page, check.headers)
    await services.limiter.record_success(email)
    gate = await signin_gate(request.app, result)
    if gate == "mfa":
        # SECURITY: the password alone earns a half-session that reaches only the MFA step.
        response = with_headers(see_other(f"{MFA_PAGE}?rd={quote(rd, safe='')}"), check.headers)
        await start_session(services, request, result, response, mfa_pending=True)
        return response
    target = f"{ENROLL_PAGE}?rd={quote(rd, safe='')}" if gate == "enroll" else rd
    response = with_headers(see_other(target), check.headers)
    await start_session(services, request, result, response)
    return response


async def signup_form(request: web.Request) -> web.StreamResponse:
    """`GET /.gateway/signup?rd=&invitation=`: the form."""
    rd = safe_redirect_target(request.query.get("rd"))
    return signup_page(rd, invitation=request.query.get("invitation", "")[:128])


@store_guard
async def signup_submit(request: web.Request) -> web.StreamResponse:
    """`POST /.gateway/signup`: create the account and sign in, or show the form again."""
    services = request.app[AUTH_SERVICES]
    if not form_origin_ok(request, services.public_origin):
        return message_page("Refused", "cross-site request refused", 403)
    form = await read_form(request)
    if form is None:
        return message_page("Bad request", "the form could not be read", 400)
    rd = safe_redirect_target(form.get("rd"))
    email, password = form.get("email", ""), form.get("password", "")
    invitation, tenant = form.get("invitation", ""), form.get("tenant", "")
    scope = services.scope(request)
    ctx = request_context(scope)
    check = await services.limiter.check("signup", scope.client_ip)
    if not check.allowed:
        return with_headers(signup_page(rd, TOO_MANY, email=email[:254], status=429), check.headers)
    try:
        if invitation:
            result = await services.identity.signup_with_invitation(
                email, password, invitation, ctx
            )
        else:
            result = await services.identity.signup(email, password, tenant, ctx)
    except IdentityError as exc:
        page = signup_page(
            rd,
            exc.message,
            email=email[:254],
            tenant=tenant[:63],
            invitation=invitation[:128],
            status=exc.status,
        )
        return with_headers(page, check.headers)
    response = with_headers(see_other(rd), check.headers)
    await start_session(services, request, result, response)
    return response


@store_guard
async def logout_form(request: web.Request) -> web.StreamResponse:
    """`GET /.gateway/logout`: a confirmation form (GET never changes state)."""
    services = request.app[AUTH_SERVICES]
    token = read_session_token(request, services.cookie)
    record = await services.sessions.authenticate(token) if token else None
    return logout_page(record is not None)


@store_guard
async def logout_submit(request: web.Request) -> web.StreamResponse:
    """`POST /.gateway/logout`: revoke the session, clear the cookie, back to the login page."""
    services = request.app[AUTH_SERVICES]
    token = read_session_token(request, services.cookie)
    record = await services.sessions.authenticate(token) if token else None
    if record is not None:
        if not csrf_ok(request, record, services.sessions, services.public_origin):
            return message_page("Refused", "cross-site request refused", 403)
        await services.sessions.revoke(
            record.id,
            Actor("user", record.user_id),
            request_context(services.scope(request)),
            tenant_id=record.tenant_id,
            reason=SIGNOUT,
        )
    response = see_other("/.gateway/login")
    clear_session_cookie(response, services.cookie)
    return response


def setup_hosted_pages(app: web.Application) -> None:
    """Registers the hosted pages."""
    app.router.add_get("/.gateway/login", login_form)
    app.router.add_post("/.gateway/login", login_submit)
    app.router.add_get("/.gateway/signup", signup_form)
    app.router.add_post("/.gateway/signup", signup_submit)
    app.router.add_get("/.gateway/logout", logout_form)
    app.router.add_post("/.gateway/logout", logout_submit)
