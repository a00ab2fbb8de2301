"""The bridge from the pipeline's principal to the Casbin engine."""

from __future__ import annotations

from gateway.identity.principal import Principal
from gateway.pipeline.reasons import Decision
from gateway.policy.engine import PolicyEngine


class PolicyAuthorizer:
    """Decides with the principal's id, its roles in the request's tenant, and that tenant.

    Roles come from the membership the principal was established with, so a role change is
    seen as soon as the membership cache drops the old entry (the change bus does that).
    """

    def __init__(self, engine: PolicyEngine) -> None:
        self.engine = engine

    async def decide(self, principal: Principal, path: str, method: str) -> Decision:
        return await self.engine.authorize(
            principal.id, principal.roles, principal.tenant.id, path, method
        )
