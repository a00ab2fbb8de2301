"""The MFA and account services the `/.gateway/*` handlers use, and the checks they share.

Built once the stores are open (`open_account_services`, run from `setup_account_routes`'s
cleanup context) and kept under `ACCOUNT_SERVICES`; handlers that may run without them (the
sign-in before `setup_account_routes` is wired) use `request.app.get(ACCOUNT_SERVICES)`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from gateway import keys
from gateway.identity.mfa import MfaService
from gateway.identity.models import AuthResult
from gateway.identity.principal import Principal
from gateway.identity.tokens_email import AccountService
from gateway.keyring import derive_key
from gateway.mail.sender import MailQueue, build_mailer
from gateway.pipeline.responses import json_error
from gateway.sessions.cookies import read_session_token
from gateway.sessions.models import SessionRecord
from gateway.storage.ports import StoreUnavailable
from gateway.storage.state import ensure_master_key
from gateway.web.common import AUTH_SERVICES, AuthServices
from gateway.web.csrf import csrf_ok

log = logging.getLogger(__name__)

ENROLL_PAGE = "/.gateway/mfa/enroll"
MFA_PAGE = "/.gateway/mfa"
SigninGate = Literal["mfa", "enroll"]


@dataclass(frozen=True, slots=True)
class AccountServices:
    """TOTP MFA, e-mailed tokens and passwords, and the mail queue behind them."""

    mfa: MfaService
    accounts: AccountService
    mail: MailQueue


ACCOUNT_SERVICES = web.AppKey("gateway_account_services", AccountServices)


async def open_account_services(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: builds `ACCOUNT_SERVICES`; on shutdown, lets queued mail finish."""
    config, state, stores = app[keys.CONFIG], app[keys.STATE], app[keys.STORES]
    master = ensure_master_key(state)
    mailer = build_mailer(config.mail, state.root)
    queue = MailQueue(mailer, config.mail.sender)
    # SECURITY: reset links never use the request's Host (a poisoned Host would send the
    # victim's token to the attacker); only the configured public URL, else the listener.
    link_base = config.public_url or f"http://{config.listen}"
    app[ACCOUNT_SERVICES] = AccountServices(
        mfa=MfaService(stores.identity, derive_key(master, "mfa")),
        accounts=AccountService(stores.identity, app[keys.HASHER], queue, link_base),
        mail=queue,
    )
    log.info("mail goes to %s", mailer.describe(), extra={"action": "mail.setup"})
    try:
        yield
    finally:
        await queue.drain()


async def signin_gate(app: web.Application, result: AuthResult) -> SigninGate | None:
    """What a correct password still needs: the MFA step, an enrolment, or nothing."""
    account = app.get(ACCOUNT_SERVICES)
    if account is None:
        return None
    if await account.mfa.is_enabled(result.user.id):
        return "mfa"
    if set(result.roles) & set(result.tenant.require_mfa):
        return "enroll"
    return None


async def current_principal(
    request: web.Request, services: AuthServices
) -> Principal | web.Response:
    """The full (not half) session's principal of a state-changing request, CSRF-checked;
    else the 401/403/503 response."""
    try:
        principal = await services.authenticator.authenticate(request, None)
    except StoreUnavailable:
        return json_error(503, "store-unavailable", "a backing store is unavailable")
    if not isinstance(principal, Principal) or principal.session is None:
        return json_error(401, "unauthenticated", "authentication required")
    # SECURITY: a cross-site page must not drive account changes with the user's cookie.
    if not csrf_ok(request, principal.session, services.sessions, services.public_origin):
        return json_error(403, "csrf", "cross-site request refused")
    return principal


async def half_session(request: web.Request, services: AuthServices) -> SessionRecord | None:
    """The valid half-session (password done, MFA pending) the request carries, if any."""
    token = read_session_token(request, services.cookie)
    record = await services.sessions.authenticate(token) if token else None
    return record if record is not None and record.mfa_pending else None


def services_of(request: web.Request) -> tuple[AuthServices, AccountServices]:
    return request.app[AUTH_SERVICES], request.app[ACCOUNT_SERVICES]
