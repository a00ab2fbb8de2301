"""The request limiter: the applicable rules of a request, charged in one store call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from gateway.config.routes import Upstream
from gateway.config.sections import RateLimitsConfig
from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.scope import RequestScope
from gateway.ratelimit.headers import PolicyResult, limited_headers, rate_headers
from gateway.ratelimit.rules import RuleSet
from gateway.ratelimit.stores import RateCheck, RateLimitStore


class LimitOutcome(NamedTuple):
    """Every applicable policy's result; `allowed` when none limited the request (build it
    with `of`, which computes `allowed` once)."""

    results: tuple[PolicyResult, ...] = ()
    allowed: bool = True

    @classmethod
    def of(cls, results: tuple[PolicyResult, ...]) -> LimitOutcome:
        """The outcome of these results."""
        return cls(results, all([p.result.allowed for p in results]))

    @property
    def headers(self) -> list[tuple[str, str]]:
        """`RateLimit-Policy`/`RateLimit` (plus `Retry-After` when limited); [] if no rule."""
        if self.allowed:
            return rate_headers(self.results)
        return limited_headers(self.results)


@dataclass(frozen=True, slots=True)
class RateLimitedDeny(Deny):
    """A `Deny` for `Reason.RATE_LIMITED` that also carries the policies' results, so the
    response can be the problem+json document (`too_many_requests_response(deny.results)`).
    Its `headers` are already complete for the plain JSON error response."""

    results: tuple[PolicyResult, ...] = ()


class RateLimiter:
    """Charges a request against every rule that applies to it.

    Guarantees: all applicable buckets are charged in one `check_many` (one Redis round trip),
    all or nothing; a request no rule applies to costs no store call.
    """

    def __init__(self, rules: RuleSet, store: RateLimitStore) -> None:
        self.rules = rules
        self.store = store

    @classmethod
    def from_config(
        cls, limits: RateLimitsConfig, upstreams: Sequence[Upstream], store: RateLimitStore
    ) -> RateLimiter:
        """A limiter over `rate_limits` and the upstreams' per-route rules."""
        return cls(RuleSet.from_config(limits, upstreams), store)

    async def check(self, scope: RequestScope) -> LimitOutcome:
        """The outcome of this request under every applicable rule."""
        applied = self.rules.applicable(scope)
        if not applied:
            return LimitOutcome()
        checks = [RateCheck(a.key, a.rule.per_second, a.rule.burst) for a in applied]
        results = await self.store.check_many(checks)
        return LimitOutcome.of(
            tuple(
                [
                    PolicyResult(a.rule.name, a.rule.window, r)
                    for a, r in zip(applied, results, strict=True)
                ]
            )
        )

    @staticmethod
    def deny(outcome: LimitOutcome) -> RateLimitedDeny:
        """The refusal of a limited request, headers included."""
        return RateLimitedDeny(
            Reason.RATE_LIMITED, headers=tuple(outcome.headers), results=outcome.results
        )
