"""`POST /.gateway/secrets/resolve {ref}`: the broker over HTTP, for upstreams.

Guarantees: the caller is authenticated by the assertion header it received from the gateway
or by a service account's `Authorization: Bearer gw_...` key (a request offering neither, or
an invalid one, is 401 and audited); the answer `{value, version}` is never cached
(`Cache-Control: no-store`); errors never echo the reference's value or the request body.
"""

from __future__ import annotations

from aiohttp import web

from gateway.audit.events import Actor
from gateway.identity.authn import bearer_api_key
from gateway.pipeline.responses import json_error
from gateway.secrets.broker import AssertionVerifier, Caller
from gateway.secrets.runtime import SECRETS
from gateway.secrets.service import SecretError
from gateway.storage.ports import StoreUnavailable
from gateway.web.common import (
    AUTH_SERVICES,
    AuthServices,
    BadBody,
    error_response,
    read_json_object,
    request_context,
)

RESOLVE_PATH = "/.gateway/secrets/resolve"
VERIFIER = web.AppKey("gateway_secrets_verifier", AssertionVerifier)
ASSERTION_HEADER = web.AppKey("gateway_secrets_assertion_header", str)


async def authenticate(request: web.Request, services: AuthServices) -> Caller | None:
    """The caller, from the assertion header or an API key; None when neither is valid."""
    token = request.headers.get(request.app[ASSERTION_HEADER])
    if token is not None:
        return request.app[VERIFIER].verify(token)
    api_key = bearer_api_key(request)
    if api_key is None:
        return None
    found = await services.identity.authenticate_api_key(api_key)
    if found is None:
        return None
    account = found.service_account
    actor = Actor("service_account", account.id)
    tenant = found.tenant
    return Caller(account.id, tenant.id, tenant.slug, tuple(found.roles), actor, "api_key")


async def resolve(request: web.Request) -> web.StreamResponse:
    """The handler; see the module docstring."""
    broker = request.app[SECRETS].broker
    services = request.app[AUTH_SERVICES]
    if broker is None:
        return json_error(503, "secrets-unavailable", "the secret broker is not ready")
    ctx = request_context(services.scope(request))
    try:
        caller = await authenticate(request, services)
        if caller is None:
            await broker.refuse_anonymous(ctx, "unauthenticated")
            return json_error(401, "unauthenticated", "a valid assertion or API key is required")
        body = await read_json_object(request)
        value, version = await broker.resolve(caller, body.get("ref"), ctx)
    except SecretError as exc:
        return json_error(exc.status, exc.code, exc.message)
    except BadBody as exc:
        return error_response(exc)
    except StoreUnavailable:
        return json_error(503, "store-unavailable", "a backing store is unavailable")
    # SECURITY: the one place a value leaves the gateway, to its authorized reader only.
    response = web.json_response({"value": value.reveal(), "version": version})
    response.headers["Cache-Control"] = "no-store"
    return response
