"""ResolveTenant: which tenant the request names, before anything depends on it."""

from __future__ import annotations

from gateway.config import TenancyConfig
from gateway.identity.tenancy import (
    TENANT_HEADER,
    TenantConflict,
    TenantRequest,
    resolve_tenant_request,
)
from gateway.pipeline.memo import MEMO_MAX_KEY, pure_memo
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
        # SECURITY: memoized per (Host, X-Tenant values, path), every input it reads; a key
        # missing one would hand one request's tenant to another (tenant confusion).
        self._memo = pure_memo(self._resolve)

    def _resolve(self, host: str, selectors: tuple[str, ...], path: str) -> TenantRequest:
        """The tenant named by a raw Host value, the `X-Tenant` values and the path."""
        return resolve_tenant_request(self.config, request_hostname(host), list(selectors), path)

    async def __call__(self, scope: RequestScope) -> Deny | None:
        host, path = scope.host, scope.path
        selectors = tuple(scope.request.headers.getall(TENANT_HEADER, ()))
        size = len(host) + len(path) + sum(map(len, selectors))
        resolve = self._memo if size <= MEMO_MAX_KEY else self._resolve
        try:
            # SECURITY: every source is read; disagreement is tenant confusion, not a choice.
            found = resolve(host, selectors, path)
        except TenantConflict as exc:
            return Deny(Reason.TENANT_CONFLICT, str(exc))
        scope.tenant_slug = found.slug
        scope.path = found.path
        return None
