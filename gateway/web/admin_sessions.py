"""Session administration (`/.gateway/admin/v1`): list, revoke one, all of a user, all of a
tenant; and the scope rules the operator endpoints share.

Sessions are shown by public id, never by token or token hash. A tenant admin sees and
revokes their tenant's sessions only; an operator, every tenant's. Another tenant's session,
user or tenant answers 404, exactly like a missing one.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import keys
from gateway.audit.events import RequestContext
from gateway.identity.models import Tenant
from gateway.identity.principal import Principal
from gateway.pipeline.paths import PathRejected, normalize_path
from gateway.pipeline.responses import json_error
from gateway.pipeline.stages.mfa import enrollment_required
from gateway.sessions.models import SessionRecord
from gateway.web.admin import (
    PREFIX,
    Refused,
    actor_of,
    enrollment_refusal,
    find_tenant,
    guarded,
    roles_in,
)
from gateway.web.common import AuthServices

NOT_FOUND = "not-found"


def request_path(request: web.Request) -> str:
    """The normalized path the policy decides on (the request's own, query left out)."""
    try:
        return normalize_path(request.raw_path.partition("?")[0])
    except PathRejected:
        raise Refused(json_error(400, "bad-path", "the request path is not acceptable")) from None


async def decide(
    request: web.Request, principal: Principal, roles: tuple[str, ...], domain: str, path: str
) -> None:
    """Casbin's decision for this request on `path` in `domain`; Refused (403/503) on deny."""
    engine = request.app[keys.POLICY]
    decision = await engine.authorize(principal.id, roles, domain, path, request.method)
    if not decision.allow:
        error = "policy-error" in decision.reasons
        status, code = (503, "policy-unavailable") if error else (403, "policy-deny")
        raise Refused(json_error(status, code, "access denied"))


async def authorized_tenant(
    request: web.Request, services: AuthServices, principal: Principal, ref: str, path: str
) -> Tenant:
    """The tenant `ref` (slug or id) if the policy lets the principal act on `path` there."""
    tenant = await find_tenant(services, ref)
    roles = await roles_in(services, principal, tenant) if tenant else ()
    if tenant is None or not roles:
        # SECURITY: a tenant the caller has no role in is indistinguishable from a missing one.
        raise Refused(json_error(404, NOT_FOUND, "tenant not found"))
    # SECURITY: the tenant acted on may require MFA for the roles the caller holds there.
    if enrollment_required(principal, tenant, roles):
        raise Refused(enrollment_refusal(request))
    await decide(request, principal, roles, tenant.id, path)
    return tenant


async def admin_scope(
    request: web.Request, services: AuthServices, principal: Principal, path: str | None = None
) -> Tenant | None:
    """Where an operator endpoint acts: `?tenant=` (slug or id), else the caller's tenant;
    None (every tenant) only for an operator who names no tenant."""
    path = path or request_path(request)
    ref = request.query.get("tenant")
    if ref is None and principal.is_operator:
        # SECURITY: the platform-wide view is the operator role's alone, decided by policy.
        await decide(request, principal, ("operator",), principal.tenant.id, path)
        return None
    return await authorized_tenant(request, services, principal, ref or principal.tenant.id, path)


async def session_view(services: AuthServices, record: SessionRecord) -> dict[str, Any]:
    """The contract's session object: public ids only (never the token or its hash)."""
    user = await services.directory.user(record.user_id)
    tenant = await services.directory.tenant_by_id(record.tenant_id)
    return {
        "id": record.id,
        "user": {"id": record.user_id, "email": user.email if user else None},
        "tenant": {"id": record.tenant_id, "slug": tenant.slug if tenant else None},
        "created_at": record.created_at,
        "last_seen_at": record.last_seen_at,
        "ip": record.ip,
        "user_agent": record.user_agent,
    }


async def user_ref(services: AuthServices, ref: str | None) -> str | None:
    """A user filter given as id or email, as a user id (an unknown email matches nobody)."""
    if ref is None or "@" not in ref:
        return ref
    user = await services.identity.user_by_email(ref)
    return user.id if user else "-"


async def scoped_sessions(
    request: web.Request, services: AuthServices, principal: Principal
) -> tuple[Tenant | None, list[SessionRecord]]:
    """The scope and its active sessions (`?user=` filters by user id or email)."""
    scope = await admin_scope(request, services, principal)
    user_id = await user_ref(services, request.query.get("user"))
    tenant_id = scope.id if scope else None
    return scope, await services.sessions.list_sessions(tenant_id, user_id)


@guarded
async def list_sessions(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """`GET /sessions?tenant=&user=` → 200 {sessions: [...]}, oldest first."""
    _, records = await scoped_sessions(request, services, principal)
    return web.json_response({"sessions": [await session_view(services, r) for r in records]})


@guarded
async def revoke_session(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """`DELETE /sessions/{id}` → 204; another tenant's (or an inactive) session is 404."""
    scope = await admin_scope(request, services, principal)
    done = await services.sessions.revoke(
        request.match_info["id"], actor_of(principal), ctx,
        tenant_id=scope.id if scope else None, reason="admin",
    )  # fmt: skip
    if not done:
        return json_error(404, NOT_FOUND, "session not found")
    return web.Response(status=204)


@guarded
async def revoke_user_sessions(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """`POST /users/{id}/sessions/revoke` → 200 {revoked: [ids]}.

    An operator without `?tenant=` revokes the user's sessions in every tenant; otherwise only
    those in the scope's tenant, of which the user must be a member (else 404).
    """
    scope = await admin_scope(request, services, principal)
    user_id, actor = request.match_info["id"], actor_of(principal)
    if scope is None:
        if await services.directory.user(user_id) is None:
            return json_error(404, NOT_FOUND, "user not found")
        ids = await services.sessions.revoke_user(user_id, actor, ctx, reason="admin")
        return web.json_response({"revoked": ids})
    # SECURITY: a tenant admin reaches the user's sessions in their own tenant only.
    if await services.directory.roles(scope.id, user_id) is None:
        return json_error(404, NOT_FOUND, "user not found")
    ids = []
    for record in await services.sessions.list_sessions(scope.id, user_id):
        if await services.sessions.revoke(
            record.id, actor, ctx, tenant_id=scope.id, reason="admin"
        ):
            ids.append(record.id)
    return web.json_response({"revoked": ids})


@guarded
async def revoke_tenant_sessions(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """`POST /tenants/{t}/sessions/revoke` → 200 {revoked: [ids]} (the caller's own too)."""
    path = request_path(request)
    tenant = await authorized_tenant(request, services, principal, request.match_info["t"], path)
    ids = await services.sessions.revoke_tenant(tenant.id, actor_of(principal), ctx, reason="admin")
    return web.json_response({"revoked": ids})


def setup_session_admin(app: web.Application) -> None:
    """Registers the session part of the admin API."""
    app.router.add_get(f"{PREFIX}/sessions", list_sessions)
    app.router.add_delete(f"{PREFIX}/sessions/{{id}}", revoke_session)
    app.router.add_post(f"{PREFIX}/users/{{id}}/sessions/revoke", revoke_user_sessions)
    app.router.add_post(f"{PREFIX}/tenants/{{t}}/sessions/revoke", revoke_tenant_sessions)
