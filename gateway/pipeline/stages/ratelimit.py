"""EnforceRateLimit: the configured limits (issue 7); a named place in the chain until then."""

from __future__ import annotations

from gateway.pipeline.reasons import Deny
from gateway.pipeline.scope import RequestScope


class EnforceRateLimit:
    """Applies the configured rate limits (not yet implemented: every request passes)."""

    name = "EnforceRateLimit"

    async def __call__(self, scope: RequestScope) -> Deny | None:
        return None
