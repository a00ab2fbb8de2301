"""LoadPrincipal: who is calling, in which tenant, with which roles."""

from __future__ import annotations

from gateway.identity.authn import Authenticator, session_cookie_header
from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.scope import RequestScope
from gateway.storage.ports import StoreUnavailable


class LoadPrincipal:
    """Sets `scope.principal` from an API key or a session; public routes skip it.

    A protected route without a principal is refused (401, or the login redirect for a
    browser); a store that cannot answer is 503: never a pass to the upstream.
    """

    name = "LoadPrincipal"

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def __call__(self, scope: RequestScope) -> Deny | None:
        if scope.public:
            return None
        try:
            found = await self.authenticator.authenticate(scope.request, scope.tenant_slug)
        except (StoreUnavailable, OSError):
            # SECURITY: fail closed when the session or identity store cannot answer.
            return Deny(Reason.STORE_UNAVAILABLE)
        if isinstance(found, Deny):
            return found
        if found is None:
            return Deny(Reason.UNAUTHENTICATED)
        scope.principal = found
        if found.new_token is not None:
            cookie = session_cookie_header(found.new_token, self.authenticator.cookie)
            scope.response_headers.append(("Set-Cookie", cookie))
        return None
