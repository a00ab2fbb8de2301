"""OIDC sign-in endpoints: `/.gateway/oidc/{tenant}/start?rd=` and `/.gateway/oidc/callback`,
and `setup_oidc(app)`, which also makes the external JWT issuers available as `JWT_ISSUERS`.

`start` seals a new state, nonce and PKCE verifier into the flow cookie and redirects (302) to
the tenant's provider; `callback` checks the state against that cookie, exchanges the code
with the verifier, validates the ID token (nonce included), signs the verified email in to the
provider's tenant and answers 303 to the `rd` validated at start (and again here).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from aiohttp import web

from gateway import keys
from gateway.config import GatewayConfig
from gateway.identity.jwks_cache import OutboundHttp
from gateway.identity.jwt_issuers import JwtIssuers
from gateway.identity.models import AuthResult
from gateway.identity.oidc import OidcError, OidcProvider, new_pkce
from gateway.identity.oidc_flow import FlowSealer, FlowState, LoginRefused, OidcAccounts
from gateway.keyring import derive_key
from gateway.pipeline.responses import json_error
from gateway.storage.ports import StoreUnavailable
from gateway.storage.state import ensure_master_key
from gateway.web.auth_api import start_session
from gateway.web.common import AUTH_SERVICES, request_context
from gateway.web.redirects import safe_redirect_target

log = logging.getLogger(__name__)

CALLBACK_PATH = "/.gateway/oidc/callback"
FLOW_COOKIE_SECURE = "__Host-gw_oidc"
FLOW_COOKIE_INSECURE = "gw_oidc"


@dataclass
class OidcRuntime:
    """The configured providers by tenant slug, and (from start-up) the flow cookie sealer."""

    providers: Mapping[str, OidcProvider]
    http: OutboundHttp
    config: GatewayConfig
    sealer: FlowSealer | None = None

    @property
    def cookie_name(self) -> str:
        return FLOW_COOKIE_SECURE if self.config.cookie.secure else FLOW_COOKIE_INSECURE

    def callback_url(self, request: web.BaseRequest) -> str:
        """The absolute redirect URI: under `public_url` when configured (recommended)."""
        origin = self.config.public_origin or f"{request.scheme}://{request.host}"
        return origin + CALLBACK_PATH


OIDC = web.AppKey("gateway_oidc", OidcRuntime)
JWT_ISSUERS = web.AppKey("gateway_jwt_issuers", JwtIssuers)


def _set_flow_cookie(response: web.StreamResponse, runtime: OidcRuntime, value: str) -> None:
    # SECURITY: HttpOnly, host-only, Lax (sent on the provider's top-level redirect back).
    response.set_cookie(
        runtime.cookie_name,
        value,
        max_age=runtime.config.oidc.flow_timeout,
        path="/",
        secure=runtime.config.cookie.secure,
        httponly=True,
        samesite="Lax",
    )


def _clear_flow_cookie(response: web.StreamResponse, runtime: OidcRuntime) -> None:
    response.del_cookie(
        runtime.cookie_name,
        path="/",
        secure=runtime.config.cookie.secure,
        httponly=True,
        samesite="Lax",
    )


async def start(request: web.Request) -> web.StreamResponse:
    """`GET /.gateway/oidc/{tenant}/start?rd=`: off to the tenant's identity provider."""
    runtime = request.app[OIDC]
    provider = runtime.providers.get(request.match_info["tenant"].lower())
    if provider is None or runtime.sealer is None:
        return json_error(404, "oidc-not-configured", "this tenant has no sign-in provider")
    rd = safe_redirect_target(request.query.get("rd"))
    verifier, challenge = new_pkce()
    flow = FlowState.new(
        provider.config.tenant,
        verifier,
        runtime.callback_url(request),
        rd,
        runtime.config.oidc.flow_timeout,
    )
    try:
        url = await provider.authorization_url(flow.redirect_uri, flow.state, flow.nonce, challenge)
    except OidcError as exc:
        log.warning("oidc start failed for %s: %s", provider.config.tenant, exc)
        return json_error(502, "oidc-unavailable", "the identity provider is unavailable")
    response = web.Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})
    _set_flow_cookie(response, runtime, runtime.sealer.seal(flow))
    return response


def _check_flow(request: web.Request, runtime: OidcRuntime) -> FlowState | web.Response:
    """The flow this callback belongs to, or the refusal to send."""
    sealed = request.cookies.get(runtime.cookie_name)
    flow = runtime.sealer.open(sealed) if runtime.sealer is not None else None
    if flow is None:
        return json_error(400, "oidc-flow-invalid", "the sign-in expired; please start again")
    state = request.query.get("state", "")
    # SECURITY: login CSRF: the callback must carry the state sealed into this browser.
    if not hmac.compare_digest(state.encode(), flow.state.encode()):
        return json_error(400, "oidc-flow-invalid", "the sign-in expired; please start again")
    if "error" in request.query or not request.query.get("code"):
        return json_error(401, "oidc-failed", "the identity provider refused the sign-in")
    return flow


async def callback(request: web.Request) -> web.StreamResponse:
    """`GET /.gateway/oidc/callback?code=&state=`: finish the login, then 303 to `rd`."""
    runtime, services = request.app[OIDC], request.app[AUTH_SERVICES]
    scope = services.scope(request)
    check = await services.limiter.check("signin", scope.client_ip)
    if (refused := check.refusal()) is not None:
        return refused
    response = await _finish(request, runtime)
    # SECURITY: the flow cookie is single use: cleared whatever the outcome.
    _clear_flow_cookie(response, runtime)
    response.headers["Cache-Control"] = "no-store"
    return response


async def _finish(request: web.Request, runtime: OidcRuntime) -> web.StreamResponse:
    flow = _check_flow(request, runtime)
    if isinstance(flow, web.Response):
        return flow
    provider = runtime.providers.get(flow.tenant)
    if provider is None:
        return json_error(400, "oidc-flow-invalid", "the sign-in expired; please start again")
    try:
        id_token = await provider.exchange(request.query["code"], flow.redirect_uri, flow.verifier)
        claims = await provider.validate_id_token(id_token, flow.nonce)
    except OidcError as exc:
        log.warning("oidc sign-in failed for %s: %s", flow.tenant, exc)
        return json_error(401, "oidc-failed", "sign-in with the identity provider failed")
    accounts = OidcAccounts(request.app[keys.STORES].identity, request.app[keys.HASHER])
    ctx = request_context(request.app[AUTH_SERVICES].scope(request))
    try:
        result = await accounts.sign_in(provider.config, claims, ctx)
    except LoginRefused:
        return json_error(403, "oidc-not-allowed", "this account may not sign in to this tenant")
    except StoreUnavailable:
        return json_error(503, "store-unavailable", "a backing store is unavailable")
    # SECURITY: `rd` was validated at start; validate again in case the rules tightened.
    location = safe_redirect_target(flow.rd)
    response = web.Response(status=303, headers={"Location": location})
    await start_oidc_session(request, result, response)
    return response


async def start_oidc_session(
    request: web.Request, result: AuthResult, response: web.StreamResponse
) -> None:
    """Retires any presented session, issues a new `oidc` one and sets its cookie."""
    await start_session(request.app[AUTH_SERVICES], request, result, response, auth_method="oidc")


def setup_oidc(app: web.Application) -> None:
    """Registers the OIDC routes and `JWT_ISSUERS`; call before the catch-all proxy route."""
    config = app[keys.CONFIG]
    http = OutboundHttp()
    skew = config.oidc.clock_skew
    providers = {p.tenant: OidcProvider(p, http, clock_skew=skew) for p in config.oidc.providers}
    runtime = OidcRuntime(providers, http, config)
    app[OIDC] = runtime
    app[JWT_ISSUERS] = JwtIssuers(config.jwt_issuers, http)

    async def oidc_ctx(app: web.Application) -> AsyncIterator[None]:
        master = ensure_master_key(app[keys.STATE])
        runtime.sealer = FlowSealer(derive_key(master, "oidc-flow"))
        yield
        await http.close()

    app.cleanup_ctx.append(oidc_ctx)
    app.router.add_get("/.gateway/oidc/{tenant}/start", start)
    app.router.add_get(CALLBACK_PATH, callback)
