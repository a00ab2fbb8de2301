"""Faults: Redis or PostgreSQL stops under two running gateway replicas, then comes back.

Each test owns a private server on a free port (never the shared ones) and stops it
mid-test. CONTRACT "Failure behaviour": Redis is an accelerator (sessions come from the
database, rate limits are counted per replica, readiness stays 200 and reports it);
PostgreSQL is the record (cached sessions keep working for their cache lifetime, everything
that needs the database answers 503 JSON, readiness is 503). Both recover without a restart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.auth_helpers import (
    PASSWORD,
    Account,
    AuthEnv,
    http_client,
    new_email,
    post_json,
    set_cookie_value,
    signin,
    signup,
    unique,
    upstream_headers,
)
from tests.e2e.scaleout_helpers import (
    SIGNOUT,
    assert_json_error,
    get,
    nested_prefix,
    poll,
    readiness,
    replicas,
    signout,
)
from tests.e2e.test_authorization import invite_member
from tests.support.services import ServerHandle

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

PrivateServer = Callable[[], AbstractAsyncContextManager[ServerHandle]]

LIMITED = "/limited/x"
BURST = 3
RATE_LIMITS = {
    "defaults": False,
    "rules": [
        {
            "name": "limited",
            "match": {"path": "/limited/*"},
            "key": ["user"],
            "rate": "1/h",
            "burst": BURST,
        },
    ],
}
RECOVERY = 20.0  # seconds a recovery may take (reconnect backoff is capped at 2 s)
DEGRADED_BOUND = 1.0  # seconds for a change to reach another replica while the bus is down


async def status_of(
    env: AuthEnv, http: aiohttp.ClientSession, path: str, session: str, method: str = "GET"
) -> int:
    status, _, _ = await get(env, http, path, session, method=method)
    return status


async def proxied_ok(env: AuthEnv, http: aiohttp.ClientSession, session: str) -> dict[str, Any]:
    status, body, _ = await get(env, http, "/x", session)
    assert status == 200, body
    assert isinstance(body, dict) and body["path"] == "/x", body
    return body


async def fresh_signin(env: AuthEnv, http: aiohttp.ClientSession, account: Account) -> str:
    status, raw, resp = await signin(env, http, account.email, account.password)
    assert status == 200, raw
    token = set_cookie_value(resp, env.cookie_name)
    assert token
    return token


def check(body: dict[str, Any], name: str) -> str:
    return str(body.get("checks", {}).get(name, "<missing>"))


async def put_rules(
    env: AuthEnv, http: aiohttp.ClientSession, admin: Account, rules: list[dict[str, str]]
) -> None:
    path = f"/.gateway/admin/v1/tenants/{admin.tenant_slug}/policy"
    status, body, _ = await get(env, http, path, admin.session, method="PUT", body={"rules": rules})
    assert status == 200, body


def expect_503(problems: list[str], what: str, status: int, body: Any) -> None:
    """Records (instead of raising) anything but the gateway's 503 JSON error."""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    try:
        assert_json_error(status, body if not isinstance(body, str) else json.loads(body), 503)
    except (AssertionError, ValueError):
        problems.append(f"{what}: expected 503 JSON, got {status} {body!r}")


DENY_REPORTS = {"sub": "editor", "obj": "/reports/*", "act": "DELETE", "eft": "deny"}


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
async def test_redis_outage_keeps_traffic_flowing_and_recovers_by_itself(
    tmp_path: Path, postgres_url: str, private_redis: PrivateServer
) -> None:
    async with (
        private_redis() as redis,
        replicas(
            tmp_path,
            ["a", "b"],
            database_url=postgres_url,
            redis_url=redis.url,
            redis_prefix="gwfault:",
            auto_migrate=True,
            rate_limits=RATE_LIMITS,
        ) as envs,
        http_client() as http,
    ):
        a, b = envs["a"], envs["b"]
        for env in (a, b):
            status, body = await readiness(env, http)
            assert status == 200, body
            assert check(body, "redis") == "ok" and check(body, "rate_limits") == "ok", body
        admin = await signup(a, http, tenant=unique("ro"))
        editor = await invite_member(a, http, admin, "editor")
        await proxied_ok(b, http, admin.session)
        await proxied_ok(b, http, editor.session)

        # Shared limits while Redis is up: one budget across both replicas.
        for env in (a, b, a):
            assert await status_of(env, http, LIMITED, admin.session) == 200
        assert await status_of(b, http, LIMITED, admin.session) == 429

        # ---- outage ---------------------------------------------------------------------
        await redis.stop()

        # Signed-in traffic keeps flowing on both replicas (sessions from PostgreSQL).
        for env in (a, b):
            body = await proxied_ok(env, http, editor.session)
            assert upstream_headers(body)["x-user-id"] == editor.user_id
        # Sign-up and sign-in still work, and their sessions work on the other replica.
        newcomer = await signup(b, http, tenant=unique("rn"))
        await proxied_ok(a, http, newcomer.session)
        token = await fresh_signin(a, http, admin)
        await proxied_ok(b, http, token)

        # Readiness stays 200 and names the degradation.
        for env in (a, b):
            status, body = await readiness(env, http)
            assert status == 200, body
            assert check(body, "database") == "ok", body
            assert check(body, "redis").startswith("failed"), body

        # Rate limits fall back to per-replica counting: enforced, never open, never closed.
        for env in (a, b):
            for _ in range(BURST):
                assert await status_of(env, http, LIMITED, newcomer.session) == 200
            assert await status_of(env, http, LIMITED, newcomer.session) == 429
            status, body = await readiness(env, http)
            assert status == 200, body
            assert check(body, "rate_limits").startswith("failed"), body

        # Revocation without the bus: caches shrank, a sign-out on a is refused on b quickly.
        started = time.perf_counter()
        await signout(a, http, token)
        await poll(
            lambda: status_of(b, http, "/x", token), lambda s: s == 401, timeout=3 * DEGRADED_BOUND
        )
        took = time.perf_counter() - started
        print(f"\n[outage] redis down: sign-out on a -> refused on b: {took * 1000:.1f} ms")
        assert took < DEGRADED_BOUND

        # ---- recovery -------------------------------------------------------------------
        await redis.start()
        for env in (a, b):
            await poll(
                lambda e=env: readiness(e, http),
                lambda r: r[0] == 200 and check(r[1], "redis") == "ok",
                timeout=RECOVERY,
                step=0.05,
            )
        # The change bus reconnects by itself: a policy change on a reaches b again.
        await put_rules(a, http, admin, [DENY_REPORTS])
        await poll(
            lambda: status_of(b, http, "/reports/1", editor.session, "DELETE"),
            lambda s: s == 403,
            timeout=RECOVERY,
            step=0.05,
        )
        # ... and, once reconnected, quickly: sign-out on a refused on b in under a second.
        token = await fresh_signin(a, http, admin)
        await proxied_ok(b, http, token)
        await proxied_ok(b, http, token)
        started = time.perf_counter()
        await signout(a, http, token)
        await poll(lambda: status_of(b, http, "/x", token), lambda s: s == 401, timeout=3.0)
        took = time.perf_counter() - started
        print(f"[outage] redis back: sign-out on a -> refused on b: {took * 1000:.1f} ms")
        assert took < 1.0

        # Limits become shared again by themselves (the limiter retries Redis while
        # degraded); readiness stops reporting per-replica limits.
        async def limits_shared(env: AuthEnv) -> tuple[int, dict[str, Any]]:
            await status_of(env, http, LIMITED, admin.session)  # traffic through the limiter
            return await readiness(env, http)

        for env in (a, b):
            await poll(
                lambda e=env: limits_shared(e),
                lambda r: r[0] == 200 and check(r[1], "rate_limits") == "ok",
                timeout=RECOVERY,
                step=0.05,
            )
        fresh = await fresh_signin(b, http, editor)
        for env in (a, b, a):
            assert await status_of(env, http, LIMITED, fresh) == 200
        assert await status_of(b, http, LIMITED, fresh) == 429
        for env in (a, b):
            assert env.gw.proc.returncode is None, env.gw.logs()[-3000:]


@pytest.mark.timeout(180)
async def test_a_policy_change_during_a_redis_outage_reaches_other_replicas(
    tmp_path: Path, postgres_url: str, private_redis: PrivateServer
) -> None:
    """While the bus is down every replica-local cache must shrink to a short bound
    (issue 6); a deny rule added on a must not stay unenforced on b for the whole outage."""
    async with (
        private_redis() as redis,
        replicas(
            tmp_path,
            ["a", "b"],
            database_url=postgres_url,
            redis_url=redis.url,
            redis_prefix="gwfault:",
            auto_migrate=True,
        ) as envs,
        http_client() as http,
    ):
        a, b = envs["a"], envs["b"]
        admin = await signup(a, http, tenant=unique("rp"))
        editor = await invite_member(a, http, admin, "editor")
        assert await status_of(b, http, "/reports/1", editor.session, "DELETE") == 200
        await redis.stop()
        # Wait until b notices the outage (readiness reports it).
        await poll(
            lambda: readiness(b, http),
            lambda r: check(r[1], "redis").startswith("failed"),
            timeout=5.0,
            step=0.05,
        )
        await put_rules(a, http, admin, [DENY_REPORTS])
        assert await status_of(a, http, "/reports/1", editor.session, "DELETE") == 403
        await poll(
            lambda: status_of(b, http, "/reports/1", editor.session, "DELETE"),
            lambda s: s == 403,
            timeout=3 * DEGRADED_BOUND,
            step=0.05,
        )


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
async def test_postgres_outage_serves_cached_sessions_refuses_the_rest_and_recovers(
    tmp_path: Path, redis_url: str, redis_prefix: str, private_postgres: PrivateServer
) -> None:
    async with (
        private_postgres() as pg,
        replicas(
            tmp_path,
            ["a", "b"],
            database_url=pg.url,
            redis_url=redis_url,
            redis_prefix=nested_prefix(redis_prefix),
            auto_migrate=True,
        ) as envs,
        http_client() as http,
    ):
        a, b = envs["a"], envs["b"]
        admin = await signup(a, http, tenant=unique("po"))
        viewer = await invite_member(a, http, admin, "viewer")
        cold = await fresh_signin(b, http, viewer)  # stored, never used: in no cache
        leaving = {name: await fresh_signin(env, http, admin) for name, env in envs.items()}
        for name, env in envs.items():  # warm both replicas' caches
            await proxied_ok(env, http, admin.session)
            await proxied_ok(env, http, viewer.session)
            await proxied_ok(env, http, leaving[name])
            status, body = await readiness(env, http)
            assert status == 200 and check(body, "database") == "ok", body

        # ---- outage ---------------------------------------------------------------------
        await pg.stop()

        # A request whose session is cached keeps working (within the cache lifetime).
        for env in (a, b):
            body = await proxied_ok(env, http, viewer.session)
            assert upstream_headers(body)["x-user-id"] == viewer.user_id

        # A session that must be read from the database: 503 JSON, never the upstream.
        before = len(a.upstream.requests)
        for env in (a, b):
            status, body, _ = await get(env, http, "/x", cold)
            assert_json_error(status, body, 503)
        assert len(a.upstream.requests) == before, "an unverifiable request reached upstream"

        # Sign-in, sign-up, sign-out and an admin change need the database: each answers
        # 503 JSON (never 500, never a traceback, never the upstream). Every case is tried
        # before failing, so the report lists them all.
        problems: list[str] = []
        path = f"/.gateway/admin/v1/tenants/{admin.tenant_slug}/members/{viewer.user_id}"
        for name, env in envs.items():
            status, raw, _ = await signin(env, http, admin.email, PASSWORD)
            expect_503(problems, f"sign-in on {name}", status, raw)
            status, data, _ = await post_json(
                http,
                f"{env.url}/.gateway/auth/signup",
                {"email": new_email(), "password": PASSWORD, "tenant": unique("pn")},
            )
            expect_503(problems, f"sign-up on {name}", status, data)
            status, data, _ = await get(
                env, http, path, admin.session, method="PUT", body={"roles": ["editor"]}
            )
            expect_503(problems, f"role change on {name}", status, data)
            # Sign-out cannot revoke anything now: it must say so, not pretend (204).
            status, data, _ = await get(env, http, SIGNOUT, leaving[name], method="POST")
            expect_503(problems, f"sign-out on {name}", status, data)
        assert len(a.upstream.requests) == before

        # Readiness: 503 naming the database; Redis is still fine.
        for env in (a, b):
            status, body = await readiness(env, http)
            assert status == 503, body
            assert check(body, "database").startswith("failed"), body
            assert check(body, "redis") == "ok", body

        # ---- recovery, without restarting the gateways ------------------------------------
        await pg.start()
        for env in (a, b):
            await poll(
                lambda e=env: readiness(e, http),
                lambda r: r[0] == 200 and check(r[1], "database") == "ok",
                timeout=RECOVERY,
                step=0.05,
            )
        for env in (a, b):
            status, raw, resp = await signin(env, http, admin.email, PASSWORD)
            assert status == 200, raw
            token = set_cookie_value(resp, env.cookie_name)
            assert token
            await proxied_ok(a if env is b else b, http, token)
            await proxied_ok(env, http, cold)
        status, body, _ = await get(
            a, http, path, admin.session, method="PUT", body={"roles": ["editor"]}
        )
        assert status == 200, body
        status, body, _ = await get(b, http, "/x", cold, method="POST")
        assert status == 200, body
        newcomer = await signup(b, http, tenant=unique("pr"))
        await proxied_ok(a, http, newcomer.session)
        for env in (a, b):
            assert env.gw.proc.returncode is None, env.gw.logs()[-3000:]
        assert not problems, "\n".join(problems)
