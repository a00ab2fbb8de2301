"""ApplyTenantSettings: a tenant's dedicated upstream and the features a route requires."""

from __future__ import annotations

from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.scope import RequestScope
from gateway.proxy.routes import RouteTable


class ApplyTenantSettings:
    """Sends a tenant with its own `upstream` there (the silo path), and refuses (403) a route
    whose `require_features` the tenant does not have. Needs the principal's tenant."""

    name = "ApplyTenantSettings"

    def __init__(self, routes: RouteTable) -> None:
        self.routes = routes

    async def __call__(self, scope: RequestScope) -> Deny | None:
        principal = scope.principal
        if principal is None:
            return None
        tenant = principal.tenant
        if tenant.upstream is not None:
            silo = self.routes.by_name.get(tenant.upstream)
            # SECURITY: a tenant pinned to a silo never falls back to the shared upstream.
            if silo is None:
                return Deny(Reason.ROUTE_UNKNOWN)
            scope.route = silo
        route = scope.route
        if route is not None and not route.require_features <= set(tenant.features):
            return Deny(Reason.FEATURE_DISABLED)
        return None
