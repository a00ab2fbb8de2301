"""Authorize: the policy decides whether the principal may do this in this tenant."""

from __future__ import annotations

from typing import Protocol

from gateway.identity.principal import Principal
from gateway.pipeline.reasons import Decision, Deny, Reason
from gateway.pipeline.scope import RequestScope


class Authorizer(Protocol):
    """Anything that turns (principal, path, method) into a decision with reasons."""

    async def decide(self, principal: Principal, path: str, method: str) -> Decision: ...


class Authorize:
    """Asks the authorizer; a deny is 403, an engine failure 503. Public routes skip it."""

    name = "Authorize"

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    async def __call__(self, scope: RequestScope) -> Deny | None:
        if scope.public:
            return None
        principal = scope.principal
        if principal is None:
            # SECURITY: unreachable by chain order, but no principal must never mean allow.
            return Deny(Reason.UNAUTHENTICATED)
        try:
            decision = await self.authorizer.decide(principal, scope.path, scope.method)
        except Exception:
            # SECURITY: an engine that cannot decide denies (503), never allows.
            return Deny(Reason.POLICY_UNAVAILABLE)
        scope.decision = decision
        if decision.allow:
            return None
        if "policy-error" in decision.reasons:
            return Deny(Reason.POLICY_UNAVAILABLE)
        return Deny(Reason.POLICY_DENY)
