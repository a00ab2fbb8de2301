"""Brute force against sign-in, end to end: the per-account failure penalty and budget.

The penalty is always on (even with `rate_limits.defaults: false`): from the 5th consecutive
failure of one (normalized) email, the next attempt waits 1 s, then 2 s, 4 s … and it must
look exactly the same for an email that has no account. During the wait even the right
password is refused (no oracle); after it, the right password works and resets the count.
The only sleeps are the `Retry-After` waits the test is about (1 s and 2 s).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.auth_helpers import (
    AuthEnv,
    http_client,
    new_email,
    set_cookie_value,
    signin,
    signup,
)
from tests.e2e.test_rate_limits import (
    WRONG_PASSWORD,
    Reply,
    assert_limited,
    failed_signin,
    limits_env,
    raw,
)

pytestmark = pytest.mark.e2e

COMPARED_HEADERS = ("Content-Type", "Retry-After", "RateLimit-Policy", "RateLimit", "Cache-Control")


def shape(reply: Reply) -> tuple[object, ...]:
    """Everything a client could compare between two answers (status, body, rate headers)."""
    return (reply.status, reply.body, *(reply.headers.get(h) for h in COMPARED_HEADERS))


async def form_signin(env: AuthEnv, email: str, password: str) -> Reply:
    """The hosted form, `POST /.gateway/login`, same origin."""
    head = f"Content-Type: application/x-www-form-urlencoded\r\nOrigin: {env.origin}\r\n"
    body = f"email={email.replace('@', '%40')}&password={password}".encode()
    return await raw(env, "/.gateway/login", head, body, "POST")


async def test_penalty_is_identical_for_unknown_emails_and_never_a_lockout(
    tmp_path: Path,
) -> None:
    async with limits_env(tmp_path, {"defaults": False}) as env, http_client() as http:
        victim = await signup(env, http)
        unknown = new_email()

        # Five failures each: the same 401 for the account and for the unknown email.
        for _ in range(5):
            known_fail = await failed_signin(env, http, victim.email)
            unknown_fail = await failed_signin(env, http, unknown)
            assert known_fail.status == 401, known_fail.body
            assert shape(known_fail) == shape(unknown_fail)

        # The 6th attempt waits about 1 s: the same 429 whatever the account.
        known_wait = await failed_signin(env, http, victim.email)
        unknown_wait = await failed_signin(env, http, unknown)
        assert_limited(known_wait, ["account"], retry_after=1)
        assert shape(known_wait) == shape(unknown_wait)
        # The right password is refused the same way (no oracle), also through the hosted
        # form and in another letter case of the same email.
        right = await failed_signin(env, http, victim.email, password=victim.password)
        assert shape(right) == shape(known_wait)
        upper = await failed_signin(env, http, victim.email.upper(), password=victim.password)
        assert shape(upper) == shape(known_wait)
        form = await form_signin(env, victim.email, victim.password)
        assert form.status == 429 and form.headers.get("Retry-After") == "1", form.headers
        assert "Set-Cookie" not in form.headers

        await asyncio.sleep(int(unknown_wait.headers["Retry-After"]))
        # One more failure each (the 6th): the next wait doubles, identically.
        assert (await failed_signin(env, http, victim.email)).status == 401
        assert (await failed_signin(env, http, unknown)).status == 401
        known_wait = await failed_signin(env, http, victim.email)
        unknown_wait = await failed_signin(env, http, unknown)
        assert_limited(known_wait, ["account"], retry_after=2)
        assert shape(known_wait) == shape(unknown_wait)
        right = await failed_signin(env, http, victim.email, password=victim.password)
        assert shape(right) == shape(known_wait)

        # After the wait the owner signs in: never a permanent lockout.
        await asyncio.sleep(int(known_wait.headers["Retry-After"]))
        status, body, resp = await signin(env, http, victim.email, victim.password)
        assert status == 200, body
        assert set_cookie_value(resp, env.cookie_name)

        # The success reset the count: five fresh failures, then a 1 s wait (not 4 s).
        for _ in range(5):
            assert (await failed_signin(env, http, victim.email)).status == 401
        assert_limited(await failed_signin(env, http, victim.email), ["account"], retry_after=1)
        # The unknown email, untouched meanwhile, still owes its doubled wait.
        assert (await failed_signin(env, http, unknown)).status == 401
        assert_limited(await failed_signin(env, http, unknown), ["account"], retry_after=4)


async def test_account_budget_is_shared_by_every_client_ip(tmp_path: Path) -> None:
    """`defaults: true`: 20 attempts per account at once, then 1 per minute, whatever the IP
    (here every attempt comes through a trusted proxy from another client)."""
    rate_limits = {"defaults": True}
    async with (
        limits_env(tmp_path, rate_limits, trusted_proxies=["127.0.0.1/32"]) as env,
        http_client() as http,
    ):
        victim = await signup(env, http)
        for i in range(20):
            xff = {"X-Forwarded-For": f"198.51.100.{i + 1}"}
            status, body, resp = await signin(env, http, victim.email, victim.password, headers=xff)
            assert status == 200, (i, body)
            state = resp.headers["RateLimit"]
            assert f'"account";r={19 - i};' in state, state
        xff = {"X-Forwarded-For": "203.0.113.1"}
        refused = await failed_signin(env, http, victim.email, xff, password=victim.password)
        assert_limited(refused, ["account"])
        assert refused.policy is not None and '"account";q=20;w=1200' in refused.policy
        # Another account from the same client is not affected.
        other = new_email()
        assert (await failed_signin(env, http, other, xff, password=WRONG_PASSWORD)).status == 401
