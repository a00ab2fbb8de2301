"""Admin API for a tenant's members and policy rules.

`PUT /tenants/{t}/members/{user}` changes roles: the membership caches drop the old roles at
once (change bus) and the user's sessions in that tenant rotate their token on next use.
`GET/PUT /tenants/{t}/policy` read and replace the tenant's own Casbin rules; the domain of a
stored rule is always the tenant itself.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import keys
from gateway.audit.events import RequestContext
from gateway.identity.directory import MEMBERSHIP_CHANGED, TENANT_CHANGED
from gateway.identity.principal import Principal
from gateway.identity.settings import settings_view
from gateway.pipeline.responses import json_error
from gateway.policy.rules import PolicyError, Rule
from gateway.web.admin import PREFIX, actor_of, guarded, managed_tenant, roles_field
from gateway.web.common import AuthServices, BadBody, read_json_object


@guarded
async def set_member_roles(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """`PUT /tenants/{t}/members/{user} {roles}` → 200 {user_id, roles}."""
    tenant = await managed_tenant(request, services, principal, request.match_info["t"])
    body = await read_json_object(request)
    user_id = request.match_info["user"]
    roles = await services.identity.set_roles(
        tenant.id, user_id, roles_field(body), actor_of(principal), ctx
    )
    await request.app[keys.BUS].publish(
        MEMBERSHIP_CHANGED, {"tenant_id": tenant.id, "user_id": user_id}
    )
    # SECURITY: a privilege change rotates the user's tokens in this tenant (next use).
    await services.sessions.request_rotation(user_id, tenant.id)
    return web.json_response({"user_id": user_id, "tenant_id": tenant.id, "roles": list(roles)})


def rule_view(rule: Rule) -> dict[str, str]:
    return {"sub": rule.sub, "obj": rule.obj, "act": rule.act, "eft": rule.eft}


def parse_rule(index: int, item: Any) -> Rule:
    """One rule of a PUT body: `{sub, obj, act, eft?}` (the domain is always the tenant)."""
    if not isinstance(item, dict) or set(item) - {"sub", "obj", "act", "eft", "dom"}:
        raise BadBody(f"rule {index}: expected an object with sub, obj, act and eft", 422)
    fields = [item.get(k, "allow" if k == "eft" else None) for k in ("sub", "obj", "act", "eft")]
    if not all(isinstance(f, str) for f in fields):
        raise BadBody(f"rule {index}: sub, obj, act and eft must be strings", 422)
    sub, obj, act, eft = (str(f) for f in fields)
    dom = item.get("dom", "")
    return Rule(sub=sub, dom=dom if isinstance(dom, str) else "?", obj=obj, act=act, eft=eft)


@guarded
async def get_policy(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """`GET /tenants/{t}/policy` → 200 {rules: [...]} (the tenant's stored rules)."""
    tenant = await managed_tenant(request, services, principal, request.match_info["t"])
    rules = await request.app[keys.TENANT_RULES].list_rules(tenant.id)
    return web.json_response({"tenant_id": tenant.id, "rules": [rule_view(r) for r in rules]})


@guarded
async def put_policy(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """`PUT /tenants/{t}/policy {rules}` → 200 the stored set; 422 lists every problem."""
    tenant = await managed_tenant(request, services, principal, request.match_info["t"])
    body = await read_json_object(request)
    items = body.get("rules")
    if not isinstance(items, list):
        raise BadBody("`rules` must be a list", 422)
    rules = [parse_rule(i, item) for i, item in enumerate(items, start=1)]
    try:
        stored = await request.app[keys.TENANT_RULES].replace_rules(
            tenant.id, rules, actor_of(principal), ctx
        )
    except PolicyError as exc:
        response = json_error(422, "invalid-policy", "; ".join(exc.problems))
        return response
    return web.json_response({"tenant_id": tenant.id, "rules": [rule_view(r) for r in stored]})


@guarded
async def patch_tenant(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """`PATCH /tenants/{t} {features?, plan?, upstream?, require_mfa?}` → 200 the settings.

    Operators only (the default policy denies tenant admins this route).
    """
    tenant = await managed_tenant(request, services, principal, request.match_info["t"])
    body = await read_json_object(request)
    config = request.app[keys.CONFIG]
    allowed = (set(config.rate_limits.plans), {u.name for u in config.upstreams})
    updated = await services.identity.update_settings(
        tenant.id, body, allowed, actor_of(principal), ctx
    )
    await request.app[keys.BUS].publish(TENANT_CHANGED, {"tenant_id": tenant.id})
    return web.json_response(settings_view(updated))


@guarded
async def get_tenant(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """`GET /tenants/{t}` → 200 the tenant and its settings."""
    tenant = await managed_tenant(request, services, principal, request.match_info["t"])
    return web.json_response(settings_view(tenant))


def setup_admin_tenant_api(app: web.Application) -> None:
    """Registers the member and policy routes."""
    app.router.add_put(f"{PREFIX}/tenants/{{t}}/members/{{user}}", set_member_roles)
    app.router.add_get(f"{PREFIX}/tenants/{{t}}/policy", get_policy)
    app.router.add_get(f"{PREFIX}/tenants/{{t}}", get_tenant)
    app.router.add_patch(f"{PREFIX}/tenants/{{t}}", patch_tenant)
    app.router.add_put(f"{PREFIX}/tenants/{{t}}/policy", put_policy)
