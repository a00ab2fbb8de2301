"""CheckCsrf: a cookie-authenticated mutation must come from the gateway's own origin."""

from __future__ import annotations

from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.scope import RequestScope
from gateway.sessions.service import SessionService
from gateway.web.csrf import csrf_ok


class CheckCsrf:
    """Refuses (403) state-changing requests riding on a session cookie without proof of
    same-origin: an `Origin`/`Referer` of our origin or a valid `X-CSRF-Token`."""

    name = "CheckCsrf"

    def __init__(self, sessions: SessionService, public_origin: str | None) -> None:
        self.sessions = sessions
        self.public_origin = public_origin

    async def __call__(self, scope: RequestScope) -> Deny | None:
        principal = scope.principal
        if principal is None or principal.session is None:
            return None
        # SECURITY: browsers attach the cookie cross-site; the origin proves the user's intent.
        session = principal.session
        if not csrf_ok(
            scope.request, session, self.sessions, self.public_origin, scope.method, scope.host
        ):
            return Deny(Reason.CSRF)
        return None
