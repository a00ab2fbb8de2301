"""EnforceRateLimit: the configured rate limits of proxied requests (issue 7)."""

from __future__ import annotations

from gateway.pipeline.reasons import Deny
from gateway.pipeline.scope import RequestScope
from gateway.ratelimit.limiter import RateLimiter


class EnforceRateLimit:
    """Charges the request against every applicable rule; public routes too (ip rules).

    A limited request is refused with a `RateLimitedDeny` (429, `Retry-After`, rate headers);
    an allowed one continues with its rate headers added to `scope.response_headers`.
    Without a limiter every request passes.
    """

    name = "EnforceRateLimit"

    def __init__(self, limiter: RateLimiter | None = None) -> None:
        self.limiter = limiter

    async def __call__(self, scope: RequestScope) -> Deny | None:
        if self.limiter is None:
            return None
        outcome = await self.limiter.check(scope)
        if not outcome.allowed:
            return self.limiter.deny(outcome)
        scope.response_headers.extend(outcome.headers)
        return None
