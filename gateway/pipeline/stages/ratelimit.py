"""EnforceRateLimit: the configured rate limits of proxied requests (issue 7)."""

from __future__ import annotations

from aiohttp import web

from gateway.pipeline.reasons import Deny
from gateway.pipeline.scope import RequestScope
from gateway.ratelimit.limiter import RateLimiter

RATE_LIMIT_HEADERS = web.RequestKey("gateway_rate_limit_headers", list[tuple[str, str]])
"""Where an allowed request's `RateLimit-Policy`/`RateLimit` headers wait for the response:
`request.get(RATE_LIMIT_HEADERS, [])`; absent when no rule applied."""


class EnforceRateLimit:
    """Charges the request against every applicable rule; public routes too (ip rules).

    A limited request is refused with a `RateLimitedDeny` (429, `Retry-After`, rate headers);
    an allowed one continues with its rate headers stored under `RATE_LIMIT_HEADERS`.
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
        if outcome.results:
            scope.request[RATE_LIMIT_HEADERS] = outcome.headers
        return None
