"""Rate limits against the real gateway process (issue 7, CONTRACT "Rate limits").

Every test talks HTTP to `python -m gateway serve` in front of the echo upstream, so what is
checked is what a client sees: the exact burst-then-429 sequence, the IETF `RateLimit-Policy`
/ `RateLimit` fields on both outcomes, the problem+json 429, the keys (user, tenant, API key,
client IP, plan), `X-Forwarded-For` trust, path spellings, and replicas sharing one budget
through Redis (with the per-process fallback while Redis is down).

Timing: rules that must not refill during a test use rates of a few per minute, so the exact
`r`/`t` values hold however slow the box is. Where the built-in limits refill at 1/s (sign-in
per IP), the assertions allow one extra request per elapsed second instead of assuming speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from multidict import CIMultiDict, CIMultiDictProxy

from tests.e2e.auth_helpers import (
    INSECURE_COOKIE,
    PASSWORD,
    Account,
    AuthEnv,
    bearer,
    create_api_key,
    create_service_account,
    http_client,
    new_email,
    signin,
    signup,
    unique,
)
from tests.e2e.test_authorization import admin_call, cli_member, invite_member
from tests.support.gateway_proc import base_config, run_gateway
from tests.support.net import parse_response, raw_request
from tests.support.services import ServerHandle
from tests.support.upstream import run_echo_upstream

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

WRONG_PASSWORD = "wrong-password-123"
PROBLEM_TYPE = "https://iana.org/assignments/http-problem-types#quota-exceeded"

# The proxied rules of the shared gateway (`proxied` fixture). Slow rates (per minute) never
# refill during a test, so every `r`/`t` below is exact; `api` is the brief's example rule.
RULES: list[dict[str, Any]] = [
    {
        "name": "api",
        "match": {"path": "/api/*", "methods": ["POST"]},
        "key": ["user"],
        "rate": "1/s",
        "burst": 3,
    },
    {"name": "refill", "match": {"path": "/refill/*"}, "key": ["user"], "rate": "20/s", "burst": 2},
    {"name": "per-tenant", "match": {"path": "/t/*"}, "key": ["tenant"], "rate": "1/m", "burst": 3},
    {"name": "per-key", "match": {"path": "/k/*"}, "key": ["api_key"], "rate": "1/m", "burst": 2},
]
ROUTE_RULES: list[dict[str, Any]] = [
    {
        "name": "api-read",
        "match": {"path": "/api/*", "methods": ["GET"]},
        "key": ["user", "route"],
        "rate": "1/m",
        "burst": 4,
    },
]
PLANS: dict[str, list[dict[str, Any]]] = {
    "gold": [
        {"name": "gold", "match": {"path": "/p/*"}, "key": ["tenant"], "rate": "1/m", "burst": 2}
    ]
}
PER_IP = {
    "name": "per-ip",
    "match": {"path": "/public/*"},
    "key": ["ip"],
    "rate": "1/m",
    "burst": 2,
}


# --- helpers ---------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def policy(self) -> str | None:
        return self.headers.get("RateLimit-Policy")

    @property
    def state(self) -> str | None:
        return self.headers.get("RateLimit")


@contextlib.asynccontextmanager
async def limits_env(
    workdir: Path,
    rate_limits: Mapping[str, Any],
    *,
    route_limits: Sequence[Mapping[str, Any]] = (),
    **extra: Any,
) -> AsyncIterator[AuthEnv]:
    """An echo upstream and a gateway with these `rate_limits` (and route rules on `app`)."""
    async with run_echo_upstream() as upstream:
        config = base_config(upstream.url, workdir, rate_limits=dict(rate_limits), **extra)
        config["upstreams"][0]["rate_limits"] = [dict(r) for r in route_limits]
        async with run_gateway(workdir, config) as gw:
            yield AuthEnv(gw, upstream, INSECURE_COOKIE)


async def call(
    env: AuthEnv,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    *,
    session: str | None = None,
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> Reply:
    """One request (session cookie plus same-origin `Origin` when `session` is given)."""
    sent = dict(env.same_origin(session)) if session else {}
    sent.update(headers or {})
    async with http.request(
        method, f"{env.url}{path}", headers=sent, allow_redirects=False, **kwargs
    ) as resp:
        body = await resp.read()
    return Reply(resp.status, resp.headers, body)


async def raw(
    env: AuthEnv, target: str, head: str = "", body: bytes = b"", method: str = "GET"
) -> Reply:
    """A request sent byte for byte (no client-side path normalization)."""
    data = (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{env.gw.port}\r\n{head}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    status, headers, payload = parse_response(await raw_request(env.gw.host, env.gw.port, data))
    return Reply(status, CIMultiDictProxy(CIMultiDict(headers)), payload)


def assert_limited(reply: Reply, violated: list[str], retry_after: int | None = None) -> None:
    """A 429 problem+json naming `violated`, with `Retry-After` ≥ 1 and the rate fields."""
    assert reply.status == 429, (reply.status, reply.body)
    assert reply.headers.get("Content-Type", "").startswith("application/problem+json"), (
        reply.headers
    )
    body = reply.json()
    assert body["type"] == PROBLEM_TYPE, body
    assert body["status"] == 429, body
    assert body["violated-policies"] == violated, body
    assert body["error"]["code"] == "rate-limited", body
    wait = int(reply.headers["Retry-After"])
    assert wait >= 1, reply.headers
    if retry_after is not None:
        assert wait == retry_after, reply.headers
    assert reply.policy and reply.state, reply.headers
    # `Retry-After` covers every violated policy's `t`.
    for item in reply.state.split(","):
        name = item.strip().split(";")[0].strip('"')
        if name in violated:
            t = int(item.split(";t=")[1])
            assert wait >= t, (wait, reply.state)


def allowance(elapsed: float, per_second: float) -> int:
    """How many requests beyond the burst a bucket refilling at `per_second` can have granted
    within `elapsed` seconds of its first request."""
    return math.floor(elapsed * per_second)


def policy_names(reply: Reply) -> list[str]:
    if not reply.policy:
        return []
    return [item.strip().split(";")[0].strip('"') for item in reply.policy.split(",")]


def remaining(reply: Reply, name: str) -> int:
    """`r` of policy `name` in the `RateLimit` field."""
    assert reply.state, reply.headers
    for item in reply.state.split(","):
        parts = item.strip().split(";")
        if parts[0].strip('"') == name:
            return int(next(p for p in parts if p.startswith("r="))[2:])
    raise AssertionError(f"no policy {name!r} in {reply.state!r}")


async def failed_signin(
    env: AuthEnv,
    http: aiohttp.ClientSession,
    email: str,
    headers: Mapping[str, str] | None = None,
    password: str = WRONG_PASSWORD,
) -> Reply:
    status, body, resp = await signin(env, http, email, password, headers=headers)
    return Reply(status, resp.headers, body)


# --- a shared gateway for the proxied rules --------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def proxied(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AuthEnv]:
    """Global rules, a route rule and a plan; built-in auth limits off (signups are free)."""
    rate_limits = {"defaults": False, "rules": RULES, "plans": PLANS}
    workdir = tmp_path_factory.mktemp("rl-proxied")
    async with limits_env(workdir, rate_limits, route_limits=ROUTE_RULES) as env:
        yield env


async def test_burst_then_429_with_exact_headers_and_upstream_untouched(proxied: AuthEnv) -> None:
    env = proxied
    async with http_client() as http:
        user = await signup(env, http)
        seen = len(env.upstream.requests)
        replies = [await call(env, http, "POST", "/api/x", session=user.session) for _ in range(4)]

    for reply, (r, t) in zip(replies[:3], [(2, 1), (1, 2), (0, 3)], strict=True):
        assert reply.status == 200, reply.body
        assert reply.policy == '"api";q=3;w=3', reply.headers
        assert reply.state == f'"api";r={r};t={t}', reply.headers
        assert "Retry-After" not in reply.headers
    limited = replies[3]
    assert_limited(limited, ["api"], retry_after=1)
    assert limited.policy == '"api";q=3;w=3'
    assert limited.state == '"api";r=0;t=1'
    assert limited.headers.get("Cache-Control") == "no-store"
    assert limited.json()["title"] == "Too Many Requests"
    # Exactly the three allowed requests reached the upstream.
    assert [r["path"] for r in env.upstream.requests[seen:]] == ["/api/x"] * 3


async def test_rule_methods_and_refill(proxied: AuthEnv) -> None:
    env = proxied
    async with http_client() as http:
        user = await signup(env, http)
        for _ in range(3):
            assert (await call(env, http, "POST", "/api/m", session=user.session)).status == 200
        assert_limited(await call(env, http, "POST", "/api/m", session=user.session), ["api"])
        # GET is not counted by the POST-only `api` rule (only by the route's `api-read`).
        reply = await call(env, http, "GET", "/api/m", session=user.session)
        assert reply.status == 200, reply.body
        assert policy_names(reply) == ["api-read"]

        # A 20/s rule: 2 at once, the 3rd refused, then one more per 50 ms.
        ok = [await call(env, http, "GET", "/refill/x", session=user.session) for _ in range(2)]
        assert [r.status for r in ok] == [200, 200]
        assert ok[0].policy == '"refill";q=2;w=1'
        limited = await call(env, http, "GET", "/refill/x", session=user.session)
        assert_limited(limited, ["refill"], retry_after=1)
        refused_at = time.monotonic()
        while True:
            reply = await call(env, http, "GET", "/refill/x", session=user.session)
            if reply.status == 200:
                break
            assert_limited(reply, ["refill"], retry_after=1)
            assert time.monotonic() - refused_at < 1.0, "no refill within Retry-After"
            await asyncio.sleep(0.01)
        assert remaining(reply, "refill") == 0


async def test_user_key_isolates_users(proxied: AuthEnv) -> None:
    env = proxied
    async with http_client() as http:
        a, b = await signup(env, http), await signup(env, http)
        for _ in range(3):
            assert (await call(env, http, "POST", "/api/u", session=a.session)).status == 200
        assert_limited(await call(env, http, "POST", "/api/u", session=a.session), ["api"])
        reply = await call(env, http, "POST", "/api/u", session=b.session)
        assert reply.status == 200, reply.body
        assert reply.state == '"api";r=2;t=1'
        # An anonymous request has no user: a user-keyed rule does not apply (nor charge).
        anon = await call(env, http, "GET", "/public/api")
        assert anon.status == 200 and anon.policy is None


async def test_tenant_key_shares_within_a_tenant_only(proxied: AuthEnv) -> None:
    env = proxied
    async with http_client() as http:
        admin = await signup(env, http)
        member = await invite_member(env, http, admin, "viewer")
        other = await signup(env, http)
        sequence = [admin, member, admin]
        replies = [await call(env, http, "GET", "/t/x", session=u.session) for u in sequence]
        assert [r.status for r in replies] == [200, 200, 200]
        assert [remaining(r, "per-tenant") for r in replies] == [2, 1, 0]
        assert_limited(await call(env, http, "GET", "/t/x", session=member.session), ["per-tenant"])
        assert_limited(await call(env, http, "GET", "/t/y", session=admin.session), ["per-tenant"])
        reply = await call(env, http, "GET", "/t/x", session=other.session)
        assert reply.status == 200 and remaining(reply, "per-tenant") == 2


async def test_api_key_key_isolates_keys(proxied: AuthEnv) -> None:
    env = proxied
    async with http_client() as http:
        admin = await signup(env, http)
        account = await create_service_account(env, http, admin, roles=["viewer"])
        k1 = (await create_api_key(env, http, admin, account["id"]))["key"]
        k2 = (await create_api_key(env, http, admin, account["id"]))["key"]
        first = [await call(env, http, "GET", "/k/x", headers=bearer(k1)) for _ in range(2)]
        assert [(r.status, remaining(r, "per-key")) for r in first] == [(200, 1), (200, 0)]
        assert_limited(await call(env, http, "GET", "/k/x", headers=bearer(k1)), ["per-key"])
        reply = await call(env, http, "GET", "/k/x", headers=bearer(k2))
        assert (reply.status, remaining(reply, "per-key")) == (200, 1)
        # A session has no API key: the rule does not apply to it.
        reply = await call(env, http, "GET", "/k/x", session=admin.session)
        assert reply.status == 200 and "per-key" not in policy_names(reply)


async def test_plan_rules_apply_once_an_operator_sets_the_plan(proxied: AuthEnv) -> None:
    env = proxied
    async with http_client() as http:
        tenant = await signup(env, http)
        bystander = await signup(env, http)
        for _ in range(3):
            reply = await call(env, http, "GET", "/p/x", session=tenant.session)
            assert reply.status == 200 and reply.policy is None, reply.headers

        _, operator = await cli_member(env, bystander.tenant_slug, "viewer", operator=True)
        path = f"/tenants/{tenant.tenant_slug}"
        status, body = await admin_call(env, http, "PATCH", path, operator, {"plan": "gold"})
        assert status == 200 and body.get("plan") == "gold", body

        replies = [await call(env, http, "GET", "/p/x", session=tenant.session) for _ in range(2)]
        assert [(r.status, r.policy) for r in replies] == [(200, '"gold";q=2;w=120')] * 2
        assert [remaining(r, "gold") for r in replies] == [1, 0]
        assert_limited(await call(env, http, "GET", "/p/x", session=tenant.session), ["gold"])
        # Another tenant (no plan) is not affected.
        reply = await call(env, http, "GET", "/p/x", session=bystander.session)
        assert reply.status == 200 and reply.policy is None

        # Back to no plan: the plan's rules stop applying.
        status, body = await admin_call(env, http, "PATCH", path, operator, {"plan": None})
        assert status == 200, body
        reply = await call(env, http, "GET", "/p/x", session=tenant.session)
        assert reply.status == 200 and reply.policy is None, reply.headers


async def test_path_spellings_of_a_proxied_rule_share_one_budget(proxied: AuthEnv) -> None:
    env = proxied
    async with http_client() as http:
        user = await signup(env, http)
    cookie = f"Cookie: {env.cookie_name}={user.session}\r\n"
    seen = len(env.upstream.requests)
    spellings = ["/api/x", "/api//x", "/api/./x", "/%61pi/x"]
    replies = [await raw(env, target, cookie) for target in spellings]
    assert [r.status for r in replies] == [200] * 4, [r.body for r in replies]
    assert [remaining(r, "api-read") for r in replies] == [3, 2, 1, 0]
    for target in ["/api/x", "/api/%78", "/api/y/../x"]:
        assert_limited(await raw(env, target, cookie), ["api-read"])
    assert [r["path"] for r in env.upstream.requests[seen:]] == ["/api/x"] * 4


# --- client IP: X-Forwarded-For, trusted proxies, IPv6 ----------------------------------------


async def test_rotating_xff_from_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    """40 failed sign-ins, each from a "different" X-Forwarded-For: one IP, one budget."""
    async with (
        limits_env(tmp_path, {"defaults": True, "rules": [PER_IP]}) as env,
        http_client() as http,
    ):
        started = time.monotonic()
        replies = []
        for i in range(40):
            spoof = {
                "X-Forwarded-For": f"198.51.100.{i + 1}",
                "Forwarded": f"for=203.0.113.{i + 1}",
                "X-Real-IP": f"192.0.2.{i + 1}",
            }
            replies.append(await failed_signin(env, http, new_email(), spoof))
        elapsed = time.monotonic() - started
        statuses = [r.status for r in replies]
        assert set(statuses) <= {401, 429}, statuses
        assert statuses[:10] == [401] * 10, statuses
        passed = statuses.count(401)
        assert passed <= 10 + allowance(elapsed, 1.0), (passed, elapsed, statuses)
        assert 429 in statuses, statuses
        for reply in replies:
            if reply.status == 429:
                assert_limited(reply, ["signin"])

        # The proxied per-IP rule ignores the header as well.
        hops = [f"10.9.8.{i}" for i in range(3)]
        ok = [
            await call(env, http, "GET", "/public/a", headers={"X-Forwarded-For": h}) for h in hops
        ]
        assert [r.status for r in ok] == [200, 200, 429]
        assert_limited(ok[2], ["per-ip"])


async def test_rotating_xff_from_untrusted_peer_still_hits_the_account_penalty(
    tmp_path: Path,
) -> None:
    async with (
        limits_env(tmp_path, {"defaults": True}) as env,
        http_client() as http,
    ):
        async with http_client() as setup:
            victim = await signup(env, setup)
        started = time.monotonic()
        replies = [
            await failed_signin(env, http, victim.email, {"X-Forwarded-For": f"198.51.100.{i}"})
            for i in range(1, 41)
        ]
        elapsed = time.monotonic() - started
        statuses = [r.status for r in replies]
        assert statuses[:5] == [401] * 5, statuses
        assert_limited(replies[5], ["account"])
        # 1 s, 2 s, 4 s … after the 5th failure: at most log2(elapsed + 1) more tries.
        extra = math.floor(math.log2(elapsed + 1))
        assert statuses.count(401) <= 5 + extra, (statuses, elapsed)
        assert set(statuses) <= {401, 429}


async def test_trusted_proxy_gives_each_forwarded_client_its_budget(tmp_path: Path) -> None:
    async with (
        limits_env(
            tmp_path, {"defaults": True, "rules": [PER_IP]}, trusted_proxies=["127.0.0.1/32"]
        ) as env,
        http_client() as http,
    ):

        async def get(xff: str | None = None, **headers: str) -> Reply:
            if xff is not None:
                headers["X-Forwarded-For"] = xff
            return await call(env, http, "GET", "/public/a", headers=headers)

        a, b = "198.51.100.7", "198.51.100.8"
        assert [(await get(a)).status for _ in range(2)] == [200, 200]
        assert_limited(await get(a), ["per-ip"])
        # The right-most untrusted hop is the client: rotating hops to its left changes nothing.
        assert_limited(await get(f"203.0.113.9, {a}"), ["per-ip"])
        assert_limited(await get(f"unknown, 203.0.113.10,{a}"), ["per-ip"])
        assert_limited(await get(f"{a}, 127.0.0.1"), ["per-ip"])  # the trusted hop is skipped
        # Forwarded is read when X-Forwarded-For is absent.
        assert_limited(await get(Forwarded=f'for="{a}:4711"'), ["per-ip"])
        reply = await get(b)
        assert reply.status == 200 and remaining(reply, "per-ip") == 1
        # The proxy itself, without a forwarding header, is a client of its own.
        reply = await get()
        assert reply.status == 200 and remaining(reply, "per-ip") == 1

        # IPv6 clients are keyed by /64: rotating the interface id does not help.
        assert (await get("2001:db8:1:2::1")).status == 200
        assert (await get("[2001:db8:1:2:ffff:ffff:ffff:fffe]:4711")).status == 200
        assert_limited(await get("2001:db8:1:2:abcd::9"), ["per-ip"])
        reply = await get("2001:db8:1:3::1")
        assert reply.status == 200 and remaining(reply, "per-ip") == 1
        # An IPv4-mapped IPv6 address is the IPv4 client.
        assert_limited(await get(f"::ffff:{a}"), ["per-ip"])

        # Sign-in, 10 at once then 1/s per client IP: exhaust one forwarded client ...
        started = time.monotonic()
        statuses = []
        for _ in range(25):
            reply = await failed_signin(env, http, new_email(), {"X-Forwarded-For": a})
            statuses.append(reply.status)
            if reply.status == 429:
                assert_limited(reply, ["signin"])
                break
        elapsed = time.monotonic() - started
        assert statuses[-1] == 429, statuses
        assert 10 <= statuses.count(401) <= 10 + allowance(elapsed, 1.0), (statuses, elapsed)
        # ... while another forwarded client and the proxy itself still have theirs.
        assert (await failed_signin(env, http, new_email(), {"X-Forwarded-For": b})).status == 401
        assert (await failed_signin(env, http, new_email())).status == 401


async def test_rotating_trusted_xff_still_hits_the_account_penalty(tmp_path: Path) -> None:
    """Even when every attempt really comes from another client IP, the account slows down."""
    async with (
        limits_env(tmp_path, {"defaults": True}, trusted_proxies=["127.0.0.1/32"]) as env,
        http_client() as http,
    ):
        victim = await signup(env, http)
        replies = [
            await failed_signin(env, http, victim.email, {"X-Forwarded-For": f"198.51.100.{i}"})
            for i in range(1, 8)
        ]
        assert [r.status for r in replies[:5]] == [401] * 5
        assert_limited(replies[5], ["account"])
        assert_limited(replies[6], ["account"])


# --- path spellings of the credential endpoints ----------------------------------------------


def _signin_body(email: str) -> bytes:
    return json.dumps({"email": email, "password": WRONG_PASSWORD}).encode()


async def test_signin_spellings_share_one_budget(tmp_path: Path) -> None:
    """The JSON endpoint, its percent-encoded spelling and the hosted form count together;
    `//` and `./` spellings are not routed to the endpoint at all (404, not forwarded)."""
    async with limits_env(tmp_path, {"defaults": True}) as env:
        json_head = "Content-Type: application/json\r\n"
        form_head = f"Content-Type: application/x-www-form-urlencoded\r\nOrigin: {env.origin}\r\n"

        async def attempt(kind: str) -> Reply:
            email = new_email()
            if kind == "form":
                form = f"email={email}&password={WRONG_PASSWORD}".replace("@", "%40")
                return await raw(env, "/.gateway/login", form_head, form.encode(), "POST")
            return await raw(env, kind, json_head, _signin_body(email), "POST")

        seen = len(env.upstream.requests)
        for target in [
            "/.gateway/auth//signin",
            "/.gateway/auth/./signin",
            "/.gateway//auth/signin",
            "/.gateway/auth/x/../signin",
            "/.gateway/auth/signin/",
        ]:
            reply = await attempt(target)
            assert reply.status == 404 and reply.policy is None, (target, reply.status)

        kinds = ["/.gateway/auth/signin", "/.gateway/auth/%73ignin", "form"]
        started = time.monotonic()
        replies = [await attempt(kinds[i % 3]) for i in range(13)]
        elapsed = time.monotonic() - started
        statuses = [r.status for r in replies]
        assert statuses[:10] == [401] * 10, statuses
        assert statuses.count(401) <= 10 + allowance(elapsed, 1.0), (statuses, elapsed)
        assert statuses.count(401) < 13, "separate budgets per spelling"
        for kind, reply in zip(kinds * 5, replies, strict=False):
            if reply.status == 429:
                if kind == "form":
                    assert "Retry-After" in reply.headers and reply.policy, reply.headers
                else:
                    assert_limited(reply, ["signin"])
        assert len(env.upstream.requests) == seen, "a credential request reached the upstream"


async def test_signup_spellings_share_one_budget(tmp_path: Path) -> None:
    """Sign-up (5 at once, then 1 per 10 s per IP): JSON, encoded and form spellings."""
    async with limits_env(tmp_path, {"defaults": True}) as env:
        json_head = "Content-Type: application/json\r\n"
        form_head = f"Content-Type: application/x-www-form-urlencoded\r\nOrigin: {env.origin}\r\n"

        async def attempt(kind: str) -> Reply:
            email = new_email()
            # A too-short password: refused after the limit is charged, nothing is created.
            if kind == "form":
                form = f"email={email.replace('@', '%40')}&password=x&tenant={unique('s')}"
                return await raw(env, "/.gateway/signup", form_head, form.encode(), "POST")
            body = json.dumps({"email": email, "password": "x", "tenant": unique("s")})
            return await raw(env, kind, json_head, body.encode(), "POST")

        kinds = ["/.gateway/auth/signup", "/.gateway/auth/%73ignup", "form"]
        replies = [await attempt(kinds[i % 3]) for i in range(5)]
        assert all(400 <= r.status < 500 and r.status != 429 for r in replies), [
            (r.status, r.body[:80]) for r in replies
        ]
        for kind in kinds:
            reply = await attempt(kind)
            assert reply.status == 429, (kind, reply.status)
            if kind != "form":
                assert_limited(reply, ["signup"])
                assert reply.policy == '"signup";q=5;w=50'


async def test_hosted_forms_carry_rate_limit_fields_when_allowed(tmp_path: Path) -> None:
    """Contract: allowed responses carry the rate fields too, the hosted forms included
    (as the JSON endpoints do for the same outcomes)."""
    async with limits_env(tmp_path, {"defaults": True}) as env, http_client() as http:
        user = await signup(env, http)
        head = f"Content-Type: application/x-www-form-urlencoded\r\nOrigin: {env.origin}\r\n"
        signin_fields = '"signin";q=10;w=10, "account";q=20;w=1200'
        cases = {
            "login 401": (
                "/.gateway/login",
                f"email={new_email().replace('@', '%40')}&password={WRONG_PASSWORD}",
                401,
                signin_fields,
            ),
            "login 303": (
                "/.gateway/login",
                f"email={user.email.replace('@', '%40')}&password={user.password}",
                303,
                signin_fields,
            ),
            "signup 422": (
                "/.gateway/signup",
                f"email={new_email().replace('@', '%40')}&password=x&tenant={unique('f')}",
                None,
                '"signup";q=5;w=50',
            ),
        }
        missing = []
        for case, (path, form, status, fields) in cases.items():
            reply = await raw(env, path, head, form.encode(), "POST")
            if status is not None:
                assert reply.status == status, (case, reply.status)
            else:
                assert 400 <= reply.status < 500 and reply.status != 429, (case, reply.status)
            if reply.policy is None or not reply.policy.startswith(fields.split(",")[0]):
                missing.append(f"{case}: RateLimit-Policy {reply.policy!r}")
        assert not missing, missing


# --- replicas and Redis ----------------------------------------------------------------------


@dataclass
class Replicas:
    a: AuthEnv
    b: AuthEnv


@contextlib.asynccontextmanager
async def replicas(
    workdir: Path, postgres_url: str, redis_url: str, prefix: str, rate_limits: Mapping[str, Any]
) -> AsyncIterator[Replicas]:
    """Two gateway processes on one database, one Redis prefix and one state directory (the
    README: replicas share `master.key` and `signing/`)."""
    state = workdir / "shared-state"
    shared = {
        "database_url": postgres_url,
        "auto_migrate": True,
        "redis_url": redis_url,
        "storage": {"redis_prefix": prefix},
        "state_dir": str(state),
        "rate_limits": dict(rate_limits),
    }
    async with run_echo_upstream() as upstream:
        envs = []
        async with contextlib.AsyncExitStack() as stack:
            for name in ("a", "b"):
                config = base_config(upstream.url, workdir / name, **shared)
                gw = await stack.enter_async_context(run_gateway(workdir / name, config))
                envs.append(AuthEnv(gw, upstream, INSECURE_COOKIE))
            yield Replicas(*envs)


USER_RULE = {
    "name": "shared",
    "match": {"path": "/api/*"},
    "key": ["user"],
    "rate": "1/m",
    "burst": 4,
}
PROBE_RULE = {
    "name": "probe",
    "match": {"path": "/public/*"},
    "key": ["ip"],
    "rate": "100/s",
    "burst": 100,
}


async def readiness(env: AuthEnv, http: aiohttp.ClientSession) -> tuple[int, dict[str, str]]:
    reply = await call(env, http, "GET", "/.gateway/readyz")
    return reply.status, reply.json()["checks"]


async def shared_budget(reps: Replicas, http: aiohttp.ClientSession, user: Account) -> None:
    """burst 4: 2 on A and 2 on B pass (r = 3, 2, 1, 0), the 5th on either is refused."""
    order = [reps.a, reps.b, reps.a, reps.b]
    replies = [await call(e, http, "GET", "/api/s", session=user.session) for e in order]
    assert [r.status for r in replies] == [200] * 4, [r.body for r in replies]
    assert [remaining(r, "shared") for r in replies] == [3, 2, 1, 0]
    assert_limited(await call(reps.a, http, "GET", "/api/s", session=user.session), ["shared"])
    assert_limited(await call(reps.b, http, "GET", "/api/s", session=user.session), ["shared"])


async def test_two_replicas_share_one_budget(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:8]}:"
    rate_limits = {"defaults": True, "rules": [USER_RULE]}
    async with (
        replicas(tmp_path, postgres_url, redis_url, prefix, rate_limits) as reps,
        http_client() as http,
    ):
        user = await signup(reps.a, http)
        await shared_budget(reps, http, user)
        for env in (reps.a, reps.b):
            status, checks = await readiness(env, http)
            assert status == 200 and checks["rate_limits"] == "ok", checks

        # The account penalty is shared too: 3 failures on A, 2 on B, the 6th try is refused.
        for env in (reps.a, reps.a, reps.a, reps.b, reps.b):
            assert (await failed_signin(env, http, user.email)).status == 401
        assert_limited(await failed_signin(reps.a, http, user.email), ["account"])
        assert_limited(
            await failed_signin(reps.b, http, user.email, password=PASSWORD), ["account"]
        )


async def test_redis_outage_falls_back_to_per_process_limits(
    tmp_path: Path,
    postgres_url: str,
    redis_prefix: str,
    private_redis: Callable[[], AbstractAsyncContextManager[ServerHandle]],
) -> None:
    rate_limits = {"defaults": False, "rules": [USER_RULE, PROBE_RULE]}
    async with (
        private_redis() as redis,
        replicas(tmp_path, postgres_url, redis.url, redis_prefix, rate_limits) as reps,
        http_client() as http,
    ):
        before = await signup(reps.a, http)
        during = await signup(reps.a, http)
        after = await signup(reps.b, http)
        await shared_budget(reps, http, before)

        await redis.stop()
        # Per process: each replica grants its own burst of 4, then refuses (not fail-open,
        # not refuse-everything).
        for env in (reps.a, reps.b):
            for i in range(4):
                reply = await call(env, http, "GET", "/api/o", session=during.session)
                assert reply.status == 200, (i, reply.body)
            assert_limited(
                await call(env, http, "GET", "/api/o", session=during.session), ["shared"]
            )
            status, checks = await readiness(env, http)
            assert status == 200, checks
            assert checks["rate_limits"] != "ok" and checks["redis"] != "ok", checks

        await redis.start()
        deadline = time.monotonic() + 20
        for env in (reps.a, reps.b):
            while True:
                reply = await call(env, http, "GET", "/public/probe")
                assert reply.status == 200, reply.body
                status, checks = await readiness(env, http)
                if checks["rate_limits"] == "ok":
                    break
                assert time.monotonic() < deadline, f"rate limits still per process: {checks}"
                await asyncio.sleep(0.1)
            assert status == 200
        await shared_budget(reps, http, after)
