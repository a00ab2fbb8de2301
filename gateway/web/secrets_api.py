"""The secrets admin API and the broker endpoint, and `setup_secrets` wiring them in.

Admin (tenant admins in their tenant, operators anywhere; Casbin decides on the admin path):

* `PUT  /.gateway/admin/v1/tenants/{t}/secrets/{name}` `{value}` → 201 `{ref, version}`
* `GET  /.gateway/admin/v1/tenants/{t}/secrets` → 200 `{secrets: [...]}`, metadata only
* `DELETE /.gateway/admin/v1/tenants/{t}/secrets/{name}` → 204, every version destroyed
* `PUT  /.gateway/admin/v1/tenants/{t}/secrets-kek` `{provider: local|vault|byok, key?}` →
  200: the tenant's KEK moved (a Vault transit key name, or base64 of a 32-byte key) and
  every data key re-wrapped; `POST .../secrets-kek/rotate` → 200: a new KEK version.

Values are accepted in request bodies and returned only by the broker; no admin response,
log line, error or audit record carries one.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.audit.events import RequestContext
from gateway.identity.models import Tenant
from gateway.identity.principal import Principal
from gateway.pipeline.responses import json_error
from gateway.secrets.broker import AssertionVerifier, Broker
from gateway.secrets.ports import KekRef, ProviderError, SecretMeta, TenantKek
from gateway.secrets.providers import LOCAL, VAULT, VAULT_KEY_NAME
from gateway.secrets.resolve_http import ASSERTION_HEADER, RESOLVE_PATH, VERIFIER, resolve
from gateway.secrets.runtime import SECRETS, SecretsRuntime
from gateway.secrets.service import SecretError, SecretService
from gateway.secrets.values import SecretValue
from gateway.secrets.webhooks import WebhookVerifier
from gateway.secrets.wiring import open_secret_service
from gateway.web.admin import PREFIX, actor_of, guarded, managed_tenant
from gateway.web.common import (
    AUTH_SERVICES,
    AuthServices,
    BadBody,
    read_json_object,
    required_string,
)
from gateway.web.forward_auth import FORWARD_AUTH_ROUTE


def service_of(request: web.Request) -> SecretService:
    """The running secrets service, or a 503 refusal before startup completed."""
    service = request.app[SECRETS].service
    if service is None:
        raise SecretError(503, "secrets-unavailable", "the secrets service is not ready")
    return service


def meta_view(meta: SecretMeta) -> dict[str, Any]:
    """A listing entry: name, versions, times and KEK; never a value."""
    return {
        "name": meta.name, "latest_version": meta.latest_version, "versions": meta.versions,
        "created_at": meta.created_at, "updated_at": meta.updated_at, "kek": meta.kek.label,
    }  # fmt: skip


def secret_errors(handler: Any) -> Any:
    """Maps `SecretError` and provider failures to responses (inside `guarded`)."""

    async def wrapper(
        request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
    ) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request, services, principal, ctx)
        except SecretError as exc:
            return json_error(exc.status, exc.code, exc.message)
        except ProviderError:
            return json_error(503, "kek-unavailable", "the tenant's key provider is unavailable")
        return response

    return wrapper


@guarded
@secret_errors
async def put_secret(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """PUT a new version: 201 {ref, version}."""
    tenant = await managed_tenant(request, services, principal, request.match_info["t"])
    value = required_string(await read_json_object(request), "value")
    ref, version = await service_of(request).put(
        tenant.id, tenant.slug, request.match_info["name"], SecretValue(value),
        actor_of(principal), ctx,
    )  # fmt: skip
    return web.json_response({"ref": ref, "version": version}, status=201)


@guarded
@secret_errors
async def list_secrets(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """GET the tenant's secrets: metadata only."""
    tenant = await managed_tenant(request, services, principal, request.match_info["t"])
    found = await service_of(request).list(tenant.id)
    return web.json_response({"secrets": [meta_view(m) for m in found]})


@guarded
@secret_errors
async def delete_secret(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """DELETE every version: 204 (404 when there is none)."""
    tenant = await managed_tenant(request, services, principal, request.match_info["t"])
    service = service_of(request)
    await service.delete(tenant.id, request.match_info["name"], actor_of(principal), ctx)
    return web.Response(status=204)


def kek_setting(
    service: SecretService, tenant_id: str, body: dict[str, Any], old: TenantKek
) -> TenantKek:
    """The KEK setting a `secrets-kek` body asks for; BadBody (422) when malformed."""
    provider, now = required_string(body, "provider"), service.clock()
    if provider == LOCAL:
        version = old.kek.version + 1 if old.kek.provider == LOCAL else 1
        return TenantKek(tenant_id, KekRef(LOCAL, tenant_id, version), now)
    key = required_string(body, "key")
    if provider == VAULT and VAULT_KEY_NAME.fullmatch(key):
        return TenantKek(tenant_id, KekRef(VAULT, key, 1), now)
    if provider == "byok":
        try:
            raw = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == 32:
            return service.keks.byok_setting(tenant_id, raw, old)
    raise BadBody(
        "`provider` local, vault (`key`: transit key name) or byok (`key`: base64 of 32 bytes)", 422
    )


@guarded
@secret_errors
async def set_kek(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """PUT the tenant's KEK (local, a Vault transit key, or a supplied key); re-wraps all."""
    tenant = await managed_tenant(request, services, principal, request.match_info["t"])
    service = service_of(request)
    body = await read_json_object(request)
    new = kek_setting(service, tenant.id, body, await service.keks.current(tenant.id))
    done = await service.set_kek(tenant.id, new, actor_of(principal), ctx)
    return web.json_response({"kek": done.new.label, "rewrapped": done.rewrapped})


@guarded
@secret_errors
async def rotate_kek(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """POST: a new version of the tenant's KEK; re-wraps every data key."""
    tenant = await managed_tenant(request, services, principal, request.match_info["t"])
    done = await service_of(request).rotate_kek(tenant.id, actor_of(principal), ctx)
    return web.json_response(
        {"from": done.old.label, "kek": done.new.label, "rewrapped": done.rewrapped}
    )


def setup_secrets(app: web.Application) -> None:
    """Registers the secrets routes and a startup context (after the services one) that
    opens the secrets service, the broker and the webhook verifier."""
    runtime = app[SECRETS] = SecretsRuntime()
    base = f"{PREFIX}/tenants/{{t}}"
    app.router.add_put(f"{base}/secrets/{{name}}", put_secret)
    app.router.add_get(f"{base}/secrets", list_secrets)
    app.router.add_delete(f"{base}/secrets/{{name}}", delete_secret)
    app.router.add_put(f"{base}/secrets-kek", set_kek)
    app.router.add_post(f"{base}/secrets-kek/rotate", rotate_kek)
    app.router.add_post(RESOLVE_PATH, resolve)
    app.cleanup_ctx.append(lambda app: secrets_ctx(app, runtime))


async def secrets_ctx(app: web.Application, runtime: SecretsRuntime) -> AsyncIterator[None]:
    """Opens the service over the running stores and fills `runtime`; clears it on exit."""
    config = app[keys.CONFIG]
    app[ASSERTION_HEADER] = config.headers.resolved_names().get("assertion", "X-Gateway-Assertion")
    audiences = [u.name for u in config.upstreams] + [FORWARD_AUTH_ROUTE]
    app[VERIFIER] = AssertionVerifier(
        app[keys.SIGNING_KEYS], app[keys.ASSERTIONS].issuer, audiences
    )
    directory = app[AUTH_SERVICES].directory

    async def find_tenant(ref: str) -> Tenant | None:
        return await directory.tenant_by_slug(ref) or await directory.tenant_by_id(ref)

    async with open_secret_service(app[keys.STORES], app[keys.STATE]) as service:
        runtime.service = service
        runtime.broker = Broker(service, app[keys.POLICY])
        runtime.webhooks = WebhookVerifier(service, find_tenant)
        try:
            yield
        finally:
            runtime.service = runtime.broker = runtime.webhooks = None
