"""The request pipeline as data: the ordered stages every proxied request passes.

The order is the security argument, so it lives in one function and a test asserts it:
the head is vetted before anything is read; the path is normalized before any decision;
client-supplied identity is stripped before anything could trust it; the tenant the request
names is known (and a `/t/{slug}` prefix removed) before the route is chosen; the principal
is established (and its tenant's silo upstream and required features applied) before CSRF,
rate limit and policy use it; identity is injected only after
the policy allowed the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.config import TenancyConfig
from gateway.identity.assertion import AssertionSigner
from gateway.identity.authn import Authenticator
from gateway.pipeline.stages.authorize import Authorize, Authorizer
from gateway.pipeline.stages.base import Stage
from gateway.pipeline.stages.csrf import CheckCsrf
from gateway.pipeline.stages.head import CheckRequestHead
from gateway.pipeline.stages.inject import InjectIdentity
from gateway.pipeline.stages.mfa import RequireMfaEnrollment
from gateway.pipeline.stages.normalize import NormalizePath
from gateway.pipeline.stages.principal import LoadPrincipal
from gateway.pipeline.stages.ratelimit import EnforceRateLimit
from gateway.pipeline.stages.route import MatchRoute
from gateway.pipeline.stages.settings import ApplyTenantSettings
from gateway.pipeline.stages.strip import StripIdentityHeaders
from gateway.pipeline.stages.tenant import ResolveTenant
from gateway.pipeline.stages.upload import CheckUploadType
from gateway.proxy.headers import OwnedHeaders
from gateway.proxy.routes import Route, RouteTable
from gateway.ratelimit.limiter import RateLimiter
from gateway.sessions.service import SessionService


@dataclass(frozen=True, slots=True)
class ChainParts:
    """The services and settings the stages need, gathered by the composition root."""

    routes: RouteTable
    owned_headers: OwnedHeaders
    header_names: dict[str, str]
    session_cookie: str
    max_header_bytes: int
    tenancy: TenancyConfig
    authenticator: Authenticator
    sessions: SessionService
    authorizer: Authorizer
    public_origin: str | None
    signer: AssertionSigner | None = None
    rate_limiter: RateLimiter | None = None
    webhooks: Stage | None = None
    upload_types: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Signs `X-Gateway-Assertion`; None (tests only) leaves the assertion out."""


def build_proxy_chain(parts: ChainParts, fallback: Route | None = None) -> tuple[Stage, ...]:
    """The ordered stages of a proxied request (see the module docstring for why).

    Forward-auth (`/.gateway/verify`) runs the same stages with a `fallback` route for
    requests that match no configured upstream.
    """
    return (
        CheckRequestHead(parts.max_header_bytes),
        NormalizePath(),
        StripIdentityHeaders(
            parts.owned_headers, parts.header_names["request_id"], parts.session_cookie
        ),
        ResolveTenant(parts.tenancy),
        MatchRoute(parts.routes, fallback),
        LoadPrincipal(parts.authenticator),
        RequireMfaEnrollment(),
        ApplyTenantSettings(parts.routes),
        CheckUploadType(parts.upload_types),
        CheckCsrf(parts.sessions, parts.public_origin),
        EnforceRateLimit(parts.rate_limiter),
        Authorize(parts.authorizer),
        *((parts.webhooks,) if parts.webhooks is not None else ()),
        InjectIdentity(parts.header_names, parts.signer),
    )
