"""The EnforceRateLimit stage over the limiter and an in-process store."""

from __future__ import annotations

from gateway.pipeline.reasons import Reason
from gateway.pipeline.responses import deny_response
from gateway.pipeline.stages.ratelimit import EnforceRateLimit
from gateway.ratelimit.limiter import RateLimitedDeny, RateLimiter
from gateway.ratelimit.rules import RuleSet
from gateway.ratelimit.stores import MemoryRateLimitStore
from tests.unit.test_ratelimit_rules import rules, scope, user


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def stage(clock: Clock) -> EnforceRateLimit:
    return EnforceRateLimit(RateLimiter(rules(), MemoryRateLimitStore(clock)))


async def test_allowed_requests_carry_their_headers_in_the_scope() -> None:
    s = scope("/x", "POST")
    assert await stage(Clock())(s) is None
    assert s.response_headers == [
        ("RateLimit-Policy", '"app-writes";q=2;w=2, "per-ip";q=50;w=30'),
        ("RateLimit", '"app-writes";r=1;t=1, "per-ip";r=49;t=1'),
    ]


async def test_public_anonymous_requests_are_limited_per_ip() -> None:
    clock = Clock()
    enforce = stage(clock)
    denials = [await enforce(scope("/x", "POST")) for _ in range(3)]
    assert denials[:2] == [None, None]
    deny = denials[2]
    assert isinstance(deny, RateLimitedDeny)
    assert deny.reason is Reason.RATE_LIMITED
    assert [p.name for p in deny.results if not p.result.allowed] == ["app-writes"]
    assert ("Retry-After", "1") in deny.headers
    assert await enforce(scope("/x", "POST", ip="192.0.2.99")) is None
    clock.now += 1.0
    assert await enforce(scope("/x", "POST")) is None


async def test_a_refused_request_charges_no_other_rule() -> None:
    clock = Clock()
    enforce = stage(clock)
    for _ in range(5):
        await enforce(scope("/x", "POST"))
    s = scope("/x", "GET")
    assert await enforce(s) is None
    assert s.response_headers[1] == ("RateLimit", '"per-ip";r=47;t=2')


async def test_users_have_separate_budgets() -> None:
    enforce = stage(Clock())
    for _ in range(20):
        assert await enforce(scope("/api/a", "POST", ip="", route=None, principal=user())) is None
    assert await enforce(scope("/api/a", "POST", ip="", route=None, principal=user())) is not None
    assert await enforce(scope("/api/a", "POST", ip="", route=None, principal=user("u-2"))) is None


async def test_without_limiter_or_rules_nothing_is_charged_or_added() -> None:
    s = scope("/x", "POST")
    assert await EnforceRateLimit()(s) is None
    empty = EnforceRateLimit(RateLimiter(RuleSet(), MemoryRateLimitStore()))
    assert await empty(s) is None
    assert s.response_headers == []


async def test_today_s_deny_response_is_a_429_with_the_rate_headers() -> None:
    enforce = stage(Clock())
    deny = None
    for _ in range(3):
        deny = await enforce(scope("/x", "POST"))
    assert deny is not None
    s = scope("/x", "POST")
    resp = deny_response(s.request, deny)
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "1"
    assert resp.headers["RateLimit-Policy"].startswith('"app-writes"')
