"""The credential endpoints' built-in limits: per IP, per account, and failure delays."""

from __future__ import annotations

import json

from gateway.config import load_config
from gateway.ratelimit.auth import ENDPOINT_LIMITS, AuthLimiter, account_key
from gateway.ratelimit.stores import MemoryRateLimitStore

KNOWN = "ann@example.test"
UNKNOWN = "nobody@example.test"


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock) -> AuthLimiter:
    return AuthLimiter(MemoryRateLimitStore(clock))


async def fail(auth: AuthLimiter, email: str, times: int) -> list[float]:
    return [await auth.record_failure(email) for _ in range(times)]


async def test_signin_allows_its_burst_per_ip_then_429s() -> None:
    auth = limiter(Clock())
    flags = [(await auth.check("signin", "192.0.2.1")).allowed for _ in range(11)]
    assert flags == [True] * 10 + [False]
    assert (await auth.check("signin", "192.0.2.2")).allowed
    assert (await auth.check("signup", "192.0.2.1")).allowed  # its own budget


async def test_every_form_of_an_endpoint_shares_the_budget_keyed_by_name() -> None:
    auth = limiter(Clock())
    for _ in range(5):
        assert (await auth.check("signup", "2001:db8::1")).allowed
    refused = await auth.check("signup", "2001:db8::2")  # same /64
    assert not refused.allowed
    response = refused.refusal()
    assert response is not None and response.status == 429
    assert response.headers["Retry-After"] == "10"
    assert response.text is not None
    assert json.loads(response.text)["violated-policies"] == ["signup"]


async def test_growing_delays_after_five_failures_counted_from_the_last() -> None:
    clock = Clock()
    auth = limiter(clock)
    assert await fail(auth, KNOWN, 5) == [0, 0, 0, 0, 1]
    waiting = await auth.check_account(KNOWN)
    assert waiting is not None and waiting.result.retry_after == 1
    refused = await auth.check("signin", "192.0.2.1", KNOWN)
    assert not refused.allowed
    assert ("Retry-After", "1") in refused.headers
    clock.now += 1
    assert await auth.check_account(KNOWN) is None
    assert await fail(auth, KNOWN, 3) == [2, 4, 8]
    clock.now += 7
    assert await auth.check_account(KNOWN) is not None


async def test_the_delay_is_capped_at_fifteen_minutes() -> None:
    auth = limiter(Clock())
    waits = await fail(auth, KNOWN, 30)
    assert max(waits) == 900
    assert waits[-1] == 900


async def test_unknown_and_known_emails_behave_identically() -> None:
    clock = Clock()
    auth = limiter(clock)
    for email in (KNOWN, UNKNOWN):
        assert await fail(auth, email, 6) == [0, 0, 0, 0, 1, 2]
    assert (await auth.check_account(KNOWN)) == (await auth.check_account(UNKNOWN))
    assert account_key("  Ann@Example.TEST ") == account_key(KNOWN)
    assert KNOWN not in account_key(KNOWN)
    assert account_key("not an email").startswith("auth/account:email=")
    assert account_key(KNOWN, b"k") != account_key(KNOWN) != account_key(KNOWN, b"j")
    keyed = AuthLimiter(MemoryRateLimitStore(clock), key_secret=b"k")
    assert await fail(keyed, UNKNOWN, 5) == [0, 0, 0, 0, 1]


async def test_success_resets_and_failures_decay_after_an_hour() -> None:
    clock = Clock()
    auth = limiter(clock)
    await fail(auth, KNOWN, 8)
    await auth.record_success(KNOWN)
    assert await auth.check_account(KNOWN) is None
    assert await fail(auth, KNOWN, 5) == [0, 0, 0, 0, 1]
    clock.now += 3600
    assert await auth.check_account(KNOWN) is None
    assert await fail(auth, KNOWN, 1) == [0]


async def test_the_account_budget_is_shared_by_every_endpoint() -> None:
    auth = limiter(Clock())
    endpoints = list(ENDPOINT_LIMITS)
    for i in range(20):
        ip = f"192.0.2.{i}"
        assert (await auth.check(endpoints[i % 4], ip, KNOWN)).allowed
    refused = await auth.check("signin", "198.51.100.1", KNOWN)
    assert [p.name for p in refused.results if not p.result.allowed] == ["account"]
    assert (await auth.check("signin", "198.51.100.1", UNKNOWN)).allowed


async def test_allowed_checks_carry_rate_headers() -> None:
    check = await limiter(Clock()).check("signin", "192.0.2.1", KNOWN)
    assert check.refusal() is None
    assert check.headers == [
        ("RateLimit-Policy", '"signin";q=10;w=10, "account";q=20;w=1200'),
        ("RateLimit", '"signin";r=9;t=1, "account";r=19;t=60'),
    ]


async def test_defaults_off_keeps_only_the_account_limits() -> None:
    config = load_config(None, env={}, overrides={"rate_limits": {"defaults": False}})
    auth = AuthLimiter.from_config(config.rate_limits, MemoryRateLimitStore(Clock()))
    for _ in range(30):
        assert (await auth.check("signin", "192.0.2.1")).allowed
    await fail(auth, KNOWN, 5)
    assert not (await auth.check("signin", "192.0.2.1", KNOWN)).allowed
