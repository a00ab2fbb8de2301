"""InjectIdentity: the verified identity headers the upstream may trust."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.identity.assertion import AssertionSigner
from gateway.pipeline.reasons import Deny
from gateway.pipeline.scope import RequestScope


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

    async def __call__(self, scope: RequestScope) -> Deny | None:
        principal = scope.principal
        if scope.public or principal is None:
            return None
        headers = scope.upstream_headers
        names = self.names
        tenant = principal.tenant
        headers[names["tenant_id"]] = tenant.id
        headers[names["tenant_slug"]] = tenant.slug
        headers[names["user_id"]] = principal.id
        if principal.email is not None:
            headers[names["user_email"]] = principal.email
            if "preferred_username" in names:
                headers[names["preferred_username"]] = principal.email
        headers[names["user_roles"]] = ",".join(sorted(principal.roles))
        headers[names["auth_method"]] = principal.auth_method
        headers[names["tenant_features"]] = ",".join(sorted(tenant.features))
        if self.signer is not None and scope.route is not None:
            # SECURITY: `aud` binds the assertion to this upstream; another app must refuse it.
            headers[names["assertion"]] = self.signer.assertion_for(principal, scope.route.name)
        return None
