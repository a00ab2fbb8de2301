"""InjectIdentity: the verified identity headers the upstream may trust."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.identity.assertion import AssertionSigner
from gateway.identity.principal import Principal
from gateway.pipeline.reasons import Deny
from gateway.pipeline.scope import RequestScope

MAX_BLOCKS = 10_000
BlockKey = tuple[str, str, str, str | None, tuple[str, ...], str, tuple[str, ...]]


class InjectIdentity:
    """Adds the configured identity headers for the principal; public routes get none.

    Runs after `Authorize`, on a header set from which every client copy of these names was
    already removed, so what the upstream reads here is what the gateway verified. With a
    signer, the signed assertion (audience: the route's upstream name) is added too.
    """

    name = "InjectIdentity"

    def __init__(self, names: Mapping[str, str], signer: AssertionSigner | None = None) -> None:
        self.names = dict(names)
        self.signer = signer
        self._blocks: dict[BlockKey, dict[str, str]] = {}

    async def __call__(self, scope: RequestScope) -> Deny | None:
        principal = scope.principal
        if scope.public or principal is None:
            return None
        headers = scope.upstream_headers
        headers.update(self._block(principal))
        if self.signer is not None and scope.route is not None:
            # SECURITY: `aud` binds the assertion to this upstream; another app must refuse it.
            name = self.names["assertion"]
            headers[name] = self.signer.assertion_for(principal, scope.route.name)
        return None

    def _block(self, principal: Principal) -> dict[str, str]:
        """The principal's identity headers, built once per distinct identity.

        The key holds every value the block is made of, so an entry can never be stale (a
        role or feature change makes a new key); the table is emptied when it fills up.
        """
        tenant = principal.tenant
        key = (
            tenant.id,
            tenant.slug,
            principal.id,
            principal.email,
            principal.roles,
            principal.auth_method,
            tenant.features,
        )
        block = self._blocks.get(key)
        if block is None:
            if len(self._blocks) >= MAX_BLOCKS:
                self._blocks.clear()
            block = self._blocks[key] = identity_headers(self.names, principal)
        return block


def identity_headers(names: Mapping[str, str], principal: Principal) -> dict[str, str]:
    """Header name → value for the principal (a name configured twice keeps the last value)."""
    tenant = principal.tenant
    block = {
        names["tenant_id"]: tenant.id,
        names["tenant_slug"]: tenant.slug,
        names["user_id"]: principal.id,
    }
    if principal.email is not None:
        block[names["user_email"]] = principal.email
        if "preferred_username" in names:
            block[names["preferred_username"]] = principal.email
    block[names["user_roles"]] = ",".join(sorted(principal.roles))
    block[names["auth_method"]] = principal.auth_method
    block[names["tenant_features"]] = ",".join(sorted(tenant.features))
    return block
