"""The identity stages: ResolveTenant, LoadPrincipal, CheckCsrf, Authorize, InjectIdentity.

Until the identity store and policy engine are wired in (issues 3 and 4), these stages are
the named places in the chain that fail closed: a protected route is refused as
unauthenticated, and nothing is ever injected for a principal that was not established.
"""

from __future__ import annotations

from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.scope import RequestScope


class ResolveTenant:
    """Resolves the request's tenant; public routes need none."""

    name = "ResolveTenant"

    async def __call__(self, scope: RequestScope) -> Deny | None:
        return None


class LoadPrincipal:
    """Establishes who is calling; with no credential source configured, nobody is."""

    name = "LoadPrincipal"

    async def __call__(self, scope: RequestScope) -> Deny | None:
        if scope.public:
            return None
        # SECURITY: fail closed: without a verified principal a protected route is refused.
        return Deny(Reason.UNAUTHENTICATED)


class CheckCsrf:
    """Cookie-authenticated mutations must come from our own origin."""

    name = "CheckCsrf"

    async def __call__(self, scope: RequestScope) -> Deny | None:
        return None


class EnforceRateLimit:
    """Applies the configured rate limits."""

    name = "EnforceRateLimit"

    async def __call__(self, scope: RequestScope) -> Deny | None:
        return None


class Authorize:
    """Asks the policy engine; with no engine, every protected request is refused."""

    name = "Authorize"

    async def __call__(self, scope: RequestScope) -> Deny | None:
        if scope.public:
            return None
        # SECURITY: fail closed: no decision means no access.
        return Deny(Reason.POLICY_UNAVAILABLE)


class InjectIdentity:
    """Adds the verified identity headers for the principal; public routes get none."""

    name = "InjectIdentity"

    async def __call__(self, scope: RequestScope) -> Deny | None:
        return None
