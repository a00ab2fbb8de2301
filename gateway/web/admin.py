"""The admin API (`/.gateway/admin/v1`) for what identity owns: invitations, service accounts,
API keys and member roles.

Callers authenticate like any request (session cookie or API key; cookie mutations need the
CSRF proof). A tenant `admin` manages their own tenant; an `operator` manages every tenant.
Another tenant's object answers 404, exactly like a missing one.

MFA (`admin_mfa_gate`): a cookie session whose role the tenant lists in `require_mfa` and that
is not MFA-verified gets 403 `mfa-enrollment-required` on every admin request (as on proxied
requests); a cookie session of a user with MFA on changes nothing (any method but GET, HEAD,
OPTIONS) unless a code was proven on it within `mfa.step_up_seconds` (401
`mfa-step-up-required`: `POST /.gateway/auth/mfa {code}`, then retry). API keys and external
JWTs have no MFA and are subject to neither.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

from aiohttp import web

from gateway import keys
from gateway.audit.events import Actor, RequestContext
from gateway.identity.directory import API_KEY_REVOKED
from gateway.identity.errors import IdentityError, InvalidInput
from gateway.identity.models import ApiKey, ServiceAccount, Tenant
from gateway.identity.principal import Principal
from gateway.pipeline.paths import PathRejected, normalize_path
from gateway.pipeline.responses import json_error
from gateway.pipeline.stages.mfa import (
    MfaEnrollmentRequired,
    enrollment_required,
    enrollment_response,
)
from gateway.sessions.cookies import set_session_cookie
from gateway.storage.ports import StoreUnavailable
from gateway.web.account_services import ACCOUNT_SERVICES
from gateway.web.common import (
    AUTH_SERVICES,
    AuthServices,
    BadBody,
    error_response,
    read_json_object,
    request_context,
    required_string,
)
from gateway.web.csrf import SAFE_METHODS, csrf_ok

PREFIX = "/.gateway/admin/v1"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STEP_UP_CODE: Final = "mfa-step-up-required"
STEP_UP_PATH: Final = "/.gateway/auth/mfa"
STEP_UP_MESSAGE: Final = (
    f"this admin action needs a recent MFA code: POST {STEP_UP_PATH} {{code}}, then retry"
)
MfaGate = Literal["enroll", "step-up"]


class Refused(Exception):
    """The caller may not do this; carries the response to send."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def actor_of(principal: Principal) -> Actor:
    """The audit actor of an admin request."""
    if principal.kind == "service_account":
        return Actor("service_account", principal.id)
    return Actor("operator" if principal.is_operator else "user", principal.id)


def step_up_response() -> web.Response:
    """401 `{"error": {"code": "mfa-step-up-required", "message", "step_up"}}`: prove a code
    with `POST /.gateway/auth/mfa`, then retry."""
    body = {"error": {"code": STEP_UP_CODE, "message": STEP_UP_MESSAGE, "step_up": STEP_UP_PATH}}
    response = web.json_response(body, status=401)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Link"] = f'<{STEP_UP_PATH}>; rel="mfa-step-up"'
    return response


def enrollment_refusal(request: web.Request) -> web.Response:
    """403 `mfa-enrollment-required` (browsers' GETs: 302 to the enrolment page)."""
    return enrollment_response(request, MfaEnrollmentRequired(target=request.path_qs))


async def admin_mfa_gate(
    request: web.Request, services: AuthServices, principal: Principal
) -> MfaGate | None:
    """What MFA still stands between the caller and this admin request, in the caller's own
    tenant: `enroll` (a `require_mfa` role without an MFA session), `step-up` (a mutation by
    a user with MFA on whose session proved no code within `mfa.step_up_seconds`), or None."""
    # SECURITY: a tenant's `require_mfa` binds its admin API as it binds its app.
    if enrollment_required(principal):
        return "enroll"
    session = principal.session
    if principal.kind != "user" or session is None or request.method in SAFE_METHODS:
        # API keys and external JWTs have no MFA to step up; reading is not an action.
        return None
    window = request.app[keys.CONFIG].mfa.step_up_seconds
    if window == 0 or services.sessions.mfa_recent(session, window):
        return None
    # SECURITY: step-up: a stolen or old session cookie alone cannot perform admin actions
    # of a user with MFA on; a code proven on this very session within the window is needed.
    if await request.app[ACCOUNT_SERVICES].mfa.is_enabled(principal.id):
        return "step-up"
    return None


async def admin_principal(services: AuthServices, request: web.Request) -> Principal:
    """The authenticated caller of an admin request (CSRF-checked for cookies, past the MFA
    gate), or Refused."""
    found = await services.authenticator.authenticate(request, None)
    if not isinstance(found, Principal):
        raise Refused(json_error(401, "unauthenticated", "authentication required"))
    session = found.session
    # SECURITY: cookie-authenticated admin mutations must prove same-origin intent.
    if session is not None and not csrf_ok(
        request, session, services.sessions, services.public_origin
    ):
        raise Refused(json_error(403, "csrf", "cross-site request refused"))
    gate = await admin_mfa_gate(request, services, found)
    if gate == "enroll":
        raise Refused(enrollment_refusal(request))
    if gate == "step-up":
        raise Refused(step_up_response())
    return found


async def find_tenant(services: AuthServices, ref: str) -> Tenant | None:
    """A tenant by slug or id."""
    directory = services.directory
    return await directory.tenant_by_slug(ref) or await directory.tenant_by_id(ref)


async def roles_in(services: AuthServices, principal: Principal, tenant: Tenant) -> tuple[str, ...]:
    """The principal's roles in `tenant` for the admin API: operators act as operators only
    (a tenant role's deny, e.g. an admin's on settings, must not bind the platform role)."""
    if principal.is_operator:
        return ("operator",)
    if principal.kind == "user":
        roles = await services.directory.roles(tenant.id, principal.id) or ()
    else:
        # SECURITY: a service account exists in exactly one tenant.
        roles = principal.roles if tenant.id == principal.tenant.id else ()
    return tuple(roles)


async def managed_tenant(
    request: web.Request, services: AuthServices, principal: Principal, ref: str
) -> Tenant:
    """The tenant `ref` (slug or id) if the policy lets the principal do this request there.

    A tenant the principal has no role in answers 404, like a missing one; a role without the
    permission answers 403. The decision is Casbin's, on the normalized admin path.
    """
    tenant = await find_tenant(services, ref)
    roles = await roles_in(services, principal, tenant) if tenant else ()
    if tenant is None or not roles:
        # SECURITY: another tenant is indistinguishable from a missing one.
        raise Refused(json_error(404, "not-found", "tenant not found"))
    # SECURITY: acting on another tenant, that tenant's `require_mfa` applies to the roles
    # the caller holds there.
    if enrollment_required(principal, tenant, roles):
        raise Refused(enrollment_refusal(request))
    try:
        path = normalize_path(request.raw_path.partition("?")[0])
    except PathRejected:
        raise Refused(json_error(400, "bad-path", "the request path is not acceptable")) from None
    engine = request.app[keys.POLICY]
    decision = await engine.authorize(principal.id, roles, tenant.id, path, request.method)
    if not decision.allow:
        status, code = (
            (503, "policy-unavailable")
            if "policy-error" in decision.reasons
            else (403, "policy-deny")
        )
        raise Refused(json_error(status, code, "access denied"))
    return tenant


def guarded(
    handler: Callable[
        [web.Request, AuthServices, Principal, RequestContext], Awaitable[web.StreamResponse]
    ],
) -> Handler:
    """Wraps an admin handler with authentication and the error mapping."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        services = request.app[AUTH_SERVICES]
        ctx = request_context(services.scope(request))
        try:
            principal = await admin_principal(services, request)
            response = await handler(request, services, principal, ctx)
            if principal.new_token is not None:
                set_session_cookie(response, principal.new_token, services.cookie)
            return response
        except Refused as refused:
            return refused.response
        except (IdentityError, BadBody) as exc:
            return error_response(exc)
        except StoreUnavailable:
            return json_error(503, "store-unavailable", "a backing store is unavailable")

    return wrapper


def target_tenant(request: web.Request, principal: Principal) -> str:
    """`?tenant=` (slug or id) for operators acting elsewhere, else the caller's tenant."""
    return request.query.get("tenant") or principal.tenant.id


def account_view(account: ServiceAccount) -> dict[str, Any]:
    return {
        "id": account.id,
        "tenant_id": account.tenant_id,
        "name": account.name,
        "roles": list(account.roles),
        "created_at": account.created_at,
    }


def key_view(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "service_account_id": key.service_account_id,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
    }


def roles_field(body: dict[str, Any], name: str = "roles") -> list[str]:
    value = body.get(name)
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise BadBody(f"`{name}` must be a list of role names", 422)
    return value


@guarded
async def create_invitation(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """`POST /tenants/{t}/invitations {email, role}` → 201 {invitation, expires_at}."""
    tenant = await managed_tenant(request, services, principal, request.match_info["t"])
    body = await read_json_object(request)
    email, role = required_string(body, "email"), required_string(body, "role")
    token, invitation = await services.identity.create_invitation(
        tenant.id, email, role, actor_of(principal), ctx
    )
    return web.json_response(
        {"invitation": token, "id": invitation.id, "expires_at": invitation.expires_at},
        status=201,
    )


@guarded
async def create_service_account(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """`POST /tenants/{t}/service-accounts {name, roles}` → 201 the account."""
    tenant = await managed_tenant(request, services, principal, request.match_info["t"])
    body = await read_json_object(request)
    name = required_string(body, "name")
    account = await services.identity.create_service_account(
        tenant.id, name, roles_field(body), actor_of(principal), ctx
    )
    return web.json_response(account_view(account), status=201)


@guarded
async def list_service_accounts(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """`GET /tenants/{t}/service-accounts` → 200 {service_accounts: [...]}."""
    tenant = await managed_tenant(request, services, principal, request.match_info["t"])
    accounts = await services.identity.service_accounts(tenant.id)
    return web.json_response({"service_accounts": [account_view(a) for a in accounts]})


def expiry_field(body: dict[str, Any]) -> float | None:
    value = body.get("expires_at")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput("expires_at", "`expires_at` must be a Unix timestamp")
    return float(value)


@guarded
async def create_api_key(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """`POST /service-accounts/{id}/keys {expires_at?}` → 201 {id, key (shown once), …}."""
    tenant = await managed_tenant(request, services, principal, target_tenant(request, principal))
    body = await read_json_object(request) if request.body_exists else {}
    plaintext, key = await services.identity.create_api_key(
        tenant.id, request.match_info["id"], expiry_field(body), actor_of(principal), ctx
    )
    return web.json_response({**key_view(key), "key": plaintext}, status=201)


@guarded
async def revoke_api_key(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """`DELETE /keys/{id}` → 204; another tenant's key is 404."""
    tenant = await managed_tenant(request, services, principal, target_tenant(request, principal))
    key = await services.identity.revoke_api_key(
        tenant.id, request.match_info["id"], actor_of(principal), ctx
    )
    # Every process drops its cached copy at once (and within its cache bound regardless).
    await request.app[keys.BUS].publish(API_KEY_REVOKED, {"key_id": key.id})
    return web.Response(status=204)


def setup_admin_api(app: web.Application) -> None:
    """Registers the identity part of the admin API."""
    app.router.add_post(f"{PREFIX}/tenants/{{t}}/invitations", create_invitation)
    app.router.add_post(f"{PREFIX}/tenants/{{t}}/service-accounts", create_service_account)
    app.router.add_get(f"{PREFIX}/tenants/{{t}}/service-accounts", list_service_accounts)
    app.router.add_post(f"{PREFIX}/service-accounts/{{id}}/keys", create_api_key)
    app.router.add_delete(f"{PREFIX}/keys/{{id}}", revoke_api_key)
