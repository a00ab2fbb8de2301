"""ResolveTenant: which tenant the request names, before anything depends on it."""

from __future__ import annotations

from gateway.config import TenancyConfig
from gateway.identity.tenancy import TENANT_HEADER, TenantConflict, resolve_tenant_request
from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.scope import RequestScope
from gateway.pipeline.stages.route import request_hostname


class ResolveTenant:
    """Sets `scope.tenant_slug` from the configured sources and strips a `/t/{slug}` prefix.

    Conflicting sources are refused (400), never guessed. The slug is only a claim here:
    `LoadPrincipal` looks the tenant up and checks membership.
    """

    name = "ResolveTenant"

    def __init__(self, config: TenancyConfig) -> None:
        self.config = config

    async def __call__(self, scope: RequestScope) -> Deny | None:
        request = scope.request
        try:
            # SECURITY: every source is read; disagreement is tenant confusion, not a choice.
            found = resolve_tenant_request(
                self.config,
                request_hostname(scope.host),
                request.headers.getall(TENANT_HEADER, []),
                scope.path,
            )
        except TenantConflict as exc:
            return Deny(Reason.TENANT_CONFLICT, str(exc))
        scope.tenant_slug = found.slug
        scope.path = found.path
        return None
