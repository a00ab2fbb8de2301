"""Replicas share state: real `gateway serve` processes on one PostgreSQL and one Redis.

Replica `a` and `b` are single processes; `w` runs `--workers 2` (two processes sharing a
port). All three use the per-run PostgreSQL database and one Redis key prefix, so whatever
one replica does must be seen by the others: sessions, sign-out (measured: how long until
another replica refuses the cookie), role changes, tenant policy rules and tenant settings.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import (
    Account,
    AuthEnv,
    assert_error,
    http_client,
    set_cookie_value,
    signin,
    signup,
    unique,
    upstream_headers,
)
from tests.e2e.scaleout_helpers import (
    SHARED_STATE,
    get,
    in_flight,
    kill,
    nested_prefix,
    poll,
    replica,
    replicas,
    signout,
)
from tests.e2e.test_authorization import cli_member, invite_member

# The first test also pays for starting the replicas (module fixture).
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(180),
]

IDENTITY_HEADERS = (
    "x-user-id",
    "x-user-email",
    "x-user-roles",
    "x-tenant-id",
    "x-tenant-slug",
    "x-tenant-features",
    "x-auth-method",
)
# seconds: CONTRACT "DELETE /sessions/{id}: rejected on every replica within 1 s"
REVOCATION_BOUND = 1.0
PROPAGATION_BOUND = 1.0
MEASURED: dict[str, list[float]] = {}


@dataclass
class Cluster:
    a: AuthEnv
    b: AuthEnv
    w: AuthEnv  # --workers 2
    admin: Account  # admin of a tenant, signed up on a
    operator: str  # session of an operator (signed in on a)
    root: Path  # the replicas' working directories and their shared state dir
    stores: dict[str, Any]  # the store settings every replica runs with


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_url: str,
    redis_url: str,
    redis_prefix: str,
) -> AsyncIterator[Cluster]:
    root = tmp_path_factory.mktemp("scaleout")
    stores: dict[str, Any] = {
        "database_url": postgres_url,
        "redis_url": redis_url,
        "redis_prefix": nested_prefix(redis_prefix),
        "auto_migrate": True,
    }
    async with replicas(root, ["a", "b", "w"], args={"w": ["--workers", "2"]}, **stores) as envs:
        async with http_client() as http:
            admin = await signup(envs["a"], http, tenant=unique("so"))
        ops = envs["a"]
        _, operator = await cli_member(ops, admin.tenant_slug, "viewer", operator=True)
        yield Cluster(envs["a"], envs["b"], envs["w"], admin, operator, root, stores)
    for name, figures in MEASURED.items():
        shown = ", ".join(f"{f * 1000:.1f}" for f in figures)
        print(f"\n[scaleout] {name} (ms): {shown}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_client() as client:
        yield client


def fresh_connections() -> aiohttp.ClientSession:
    """A client opening a new connection per request, so SO_REUSEPORT spreads them over
    the workers of a `--workers N` replica."""
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), connector=aiohttp.TCPConnector(force_close=True)
    )


def identity(body: dict[str, Any]) -> dict[str, str]:
    headers = upstream_headers(body)
    return {name: headers.get(name, "") for name in IDENTITY_HEADERS}


async def proxied(
    env: AuthEnv, http: aiohttp.ClientSession, session: str, path: str = "/x"
) -> tuple[dict[str, Any], aiohttp.ClientResponse]:
    status, body, resp = await get(env, http, path, session)
    assert status == 200, body
    assert isinstance(body, dict) and body["path"] == path, body
    return body, resp


async def refused(env: AuthEnv, http: aiohttp.ClientSession, session: str) -> int:
    status, _, _ = await get(env, http, "/x", session)
    return status


async def new_session(env: AuthEnv, http: aiohttp.ClientSession, account: Account) -> str:
    status, raw, resp = await signin(env, http, account.email, account.password)
    assert status == 200, raw
    token = set_cookie_value(resp, env.cookie_name)
    assert token
    return token


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------


async def test_a_session_created_on_a_works_on_every_replica_with_the_same_identity(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    user = await invite_member(cluster.a, http, cluster.admin, "editor")
    body, _ = await proxied(cluster.a, http, user.session)
    seen = identity(body)
    assert seen["x-user-id"] == user.user_id and seen["x-tenant-id"] == user.tenant_id, seen
    assert seen["x-user-roles"] == "editor" and seen["x-auth-method"] == "session", seen
    body, _ = await proxied(cluster.b, http, user.session)
    assert identity(body) == seen
    # Several new connections: both workers of `w` serve it the same way.
    async with fresh_connections() as spread:
        for _ in range(8):
            body, _ = await proxied(cluster.w, spread, user.session)
            assert identity(body) == seen
    # The session API agrees on every replica.
    ids = set()
    for env in (cluster.a, cluster.b, cluster.w):
        status, info, _ = await get(env, http, "/.gateway/auth/session", user.session)
        assert status == 200, info
        ids.add((info["session"]["id"], info["user"]["id"], info["tenant"]["id"]))
    assert len(ids) == 1, ids


async def test_sign_in_on_b_works_on_a(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    token = await new_session(cluster.b, http, cluster.admin)
    body, _ = await proxied(cluster.a, http, token)
    assert upstream_headers(body)["x-user-id"] == cluster.admin.user_id


async def test_signout_on_a_is_refused_on_b_within_a_second(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    figures = MEASURED.setdefault("sign-out sent on a -> refused on b", [])
    since_204 = MEASURED.setdefault("sign-out 204 on a -> refused on b", [])
    for _ in range(5):
        token = await new_session(cluster.a, http, cluster.admin)
        # Warm every cache on b (its local cache and the Redis copy).
        await proxied(cluster.b, http, token)
        await proxied(cluster.b, http, token)
        started = time.perf_counter()
        await signout(cluster.a, http, token)
        _, after_204 = await poll(
            lambda t=token: refused(cluster.b, http, t),
            lambda s: s == 401,
            timeout=3 * REVOCATION_BOUND,
        )
        figures.append(time.perf_counter() - started)
        since_204.append(after_204)
        status, body, _ = await get(cluster.b, http, "/x", token)
        assert status == 401, body
        assert_error(body, "unauthenticated")
    assert max(figures) < REVOCATION_BOUND, figures


async def test_signout_reaches_every_worker_of_a_multi_worker_replica(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    figures = MEASURED.setdefault("sign-out on a -> refused on w (--workers 2)", [])
    async with fresh_connections() as spread:
        for _ in range(3):
            token = await new_session(cluster.a, http, cluster.admin)
            for _ in range(8):  # warm both workers
                await proxied(cluster.w, spread, token)
            started = time.perf_counter()
            await signout(cluster.a, http, token)
            await poll(
                lambda t=token: refused(cluster.w, spread, t),
                lambda s: s == 401,
                timeout=3 * REVOCATION_BOUND,
            )
            # Every later connection, whichever worker takes it, refuses the cookie.
            for _ in range(12):
                assert await refused(cluster.w, spread, token) == 401
            figures.append(time.perf_counter() - started)
        assert max(figures) < REVOCATION_BOUND, figures

        # And the other way round: a sign-out on one worker of w reaches a and b.
        token = await new_session(cluster.w, spread, cluster.admin)
        await proxied(cluster.a, http, token)
        await proxied(cluster.b, http, token)
        await signout(cluster.w, spread, token)
        for env in (cluster.a, cluster.b):
            _, took = await poll(
                lambda e=env: refused(e, http, token),
                lambda s: s == 401,
                timeout=3 * REVOCATION_BOUND,
            )
            assert took < REVOCATION_BOUND


# --------------------------------------------------------------------------------------------
# Roles, policy rules and tenant settings
# --------------------------------------------------------------------------------------------


async def set_roles(
    cluster: Cluster, http: aiohttp.ClientSession, user: Account, roles: list[str]
) -> None:
    path = f"/.gateway/admin/v1/tenants/{cluster.admin.tenant_slug}/members/{user.user_id}"
    status, body, _ = await get(
        cluster.a, http, path, cluster.admin.session, method="PUT", body={"roles": roles}
    )
    assert status == 200, body
    assert body["roles"] == roles, body


async def test_a_role_change_on_a_applies_on_bs_next_request(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    member = await invite_member(cluster.a, http, cluster.admin, "viewer")
    status, body, _ = await get(cluster.b, http, "/x", member.session, method="POST")
    assert status == 403, body
    await proxied(cluster.b, http, member.session)  # b has the viewer cached

    await set_roles(cluster, http, member, ["editor"])
    status, body, resp = await get(cluster.b, http, "/x", member.session, method="POST")
    assert status == 200, ("upgrade not applied on b's next request", body)
    assert upstream_headers(body)["x-user-roles"] == "editor"
    rotated = set_cookie_value(resp, cluster.b.cookie_name)
    assert rotated and rotated != member.session, "a role change must rotate the token"
    # The pre-change token is dead everywhere; the rotated one works everywhere.
    for env in (cluster.a, cluster.b):
        status, body, _ = await get(env, http, "/x", member.session)
        assert status == 401, body
        body, _ = await proxied(env, http, rotated)
        assert upstream_headers(body)["x-user-roles"] == "editor"

    # A downgrade is the case that matters: b must not keep the cached editor role.
    status, body, _ = await get(cluster.b, http, "/x", rotated, method="DELETE")
    assert status == 200, body
    await set_roles(cluster, http, member, ["viewer"])
    before = len(cluster.b.upstream.requests)
    status, body, resp = await get(cluster.b, http, "/x", rotated, method="DELETE")
    assert status == 403, ("downgrade not applied on b's next request", body)
    assert len(cluster.b.upstream.requests) == before
    token = set_cookie_value(resp, cluster.b.cookie_name) or rotated
    body, _ = await proxied(cluster.w, http, token)
    assert upstream_headers(body)["x-user-roles"] == "viewer"


async def test_a_tenant_rule_put_on_a_applies_on_b(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    editor = await invite_member(cluster.a, http, cluster.admin, "editor")
    status, body, _ = await get(cluster.b, http, "/reports/1", editor.session, method="DELETE")
    assert status == 200, body  # b has loaded the tenant's (empty) rules

    path = f"/.gateway/admin/v1/tenants/{cluster.admin.tenant_slug}/policy"
    deny = {"sub": "editor", "obj": "/reports/*", "act": "DELETE", "eft": "deny"}
    started = time.perf_counter()
    status, body, _ = await get(
        cluster.a, http, path, cluster.admin.session, method="PUT", body={"rules": [deny]}
    )
    assert status == 200, body

    async def delete_on_b() -> int:
        status, _, _ = await get(cluster.b, http, "/reports/1", editor.session, method="DELETE")
        return status

    await poll(delete_on_b, lambda s: s == 403, timeout=3 * PROPAGATION_BOUND)
    took = time.perf_counter() - started
    MEASURED.setdefault("policy PUT on a -> enforced on b", []).append(took)
    assert took < PROPAGATION_BOUND
    # Also on both workers of w.
    async with fresh_connections() as spread:
        for _ in range(8):
            status, body, _ = await get(
                cluster.w, spread, "/reports/1", editor.session, method="DELETE"
            )
            assert status == 403, body

    status, body, _ = await get(
        cluster.a, http, path, cluster.admin.session, method="PUT", body={"rules": []}
    )
    assert status == 200, body
    await poll(delete_on_b, lambda s: s == 200, timeout=3 * PROPAGATION_BOUND)


async def test_a_tenant_settings_patch_on_a_shows_on_b(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    user = await invite_member(cluster.a, http, cluster.admin, "viewer")
    body, _ = await proxied(cluster.b, http, user.session)
    assert upstream_headers(body).get("x-tenant-features", "") == ""

    path = f"/.gateway/admin/v1/tenants/{cluster.admin.tenant_slug}"
    started = time.perf_counter()
    status, body, _ = await get(
        cluster.a, http, path, cluster.operator, method="PATCH", body={"features": ["beta", "x"]}
    )
    assert status == 200, body

    async def features_on_b() -> str:
        body, _ = await proxied(cluster.b, http, user.session)
        return upstream_headers(body).get("x-tenant-features", "")

    await poll(features_on_b, lambda f: f == "beta,x", timeout=3 * PROPAGATION_BOUND)
    took = time.perf_counter() - started
    MEASURED.setdefault("tenant PATCH on a -> seen on b", []).append(took)
    assert took < PROPAGATION_BOUND
    status, body, _ = await get(cluster.b, http, path, cluster.operator)
    assert status == 200 and body["features"] == ["beta", "x"], body

    status, body, _ = await get(
        cluster.a, http, path, cluster.operator, method="PATCH", body={"features": []}
    )
    assert status == 200, body
    await poll(features_on_b, lambda f: f == "", timeout=3 * PROPAGATION_BOUND)


# --------------------------------------------------------------------------------------------
# Administrative revocation (per user, per tenant)
# --------------------------------------------------------------------------------------------


async def session_id(env: AuthEnv, http: aiohttp.ClientSession, token: str) -> str:
    status, info, _ = await get(env, http, "/.gateway/auth/session", token)
    assert status == 200, info
    return str(info["session"]["id"])


async def statuses(env: AuthEnv, http: aiohttp.ClientSession, tokens: list[str]) -> list[int]:
    return [await refused(env, http, token) for token in tokens]


@pytest.mark.parametrize("by", ["tenant-admin", "operator"])
async def test_revoking_a_user_on_a_refuses_their_sessions_on_b_within_a_second(
    cluster: Cluster, http: aiohttp.ClientSession, by: str
) -> None:
    # A tenant admin revokes one session at a time in their tenant; an operator without
    # `?tenant=` revokes the user in every tenant at once (a different bus notice).
    caller = cluster.admin.session if by == "tenant-admin" else cluster.operator
    figures = MEASURED.setdefault(f"user revoke ({by}) sent on a -> both refused on b", [])
    since_200 = MEASURED.setdefault(f"user revoke ({by}) 200 on a -> both refused on b", [])
    bystander = await invite_member(cluster.a, http, cluster.admin, "viewer")
    for _ in range(3):
        user = await invite_member(cluster.a, http, cluster.admin, "viewer")
        on_a = user.session  # signed up (and used) on a
        on_b = await new_session(cluster.b, http, user)
        tokens = [on_a, on_b]
        expected = {
            await session_id(cluster.a, http, on_a),
            await session_id(cluster.b, http, on_b),
        }
        # Both sessions and the bystander are cached on b (local cache and the Redis copy).
        for token in (*tokens, *tokens, bystander.session):
            await proxied(cluster.b, http, token)
        await proxied(cluster.a, http, on_a)

        path = f"/.gateway/admin/v1/users/{user.user_id}/sessions/revoke"
        started = time.perf_counter()
        status, body, _ = await get(cluster.a, http, path, caller, method="POST")
        acknowledged = time.perf_counter()
        assert status == 200, body
        assert set(body["revoked"]) == expected, body
        await poll(
            lambda t=tokens: statuses(cluster.b, http, t),
            lambda s: s == [401, 401],
            timeout=3 * REVOCATION_BOUND,
        )
        done = time.perf_counter()
        figures.append(done - started)
        since_200.append(done - acknowledged)
        for env in (cluster.a, cluster.b, cluster.w):
            for token in tokens:
                status, body, _ = await get(env, http, "/x", token)
                assert status == 401, (env.url, body)
                assert_error(body, "unauthenticated")
        # Only that user: another member of the tenant keeps their session everywhere.
        for env in (cluster.a, cluster.b):
            await proxied(env, http, bystander.session)
        # Revocation is not a ban: the user signs in again (on b) and is served on a.
        again = await new_session(cluster.b, http, user)
        await proxied(cluster.a, http, again)
    assert max(figures) < REVOCATION_BOUND, figures


@pytest.mark.parametrize("by", ["tenant-admin", "operator"])
async def test_revoking_a_tenant_on_a_refuses_all_its_sessions_on_b_and_no_other(
    cluster: Cluster, http: aiohttp.ClientSession, by: str
) -> None:
    owner = await signup(cluster.a, http, tenant=unique("rt"))
    editor = await invite_member(cluster.a, http, owner, "editor")
    viewer = await invite_member(cluster.a, http, owner, "viewer")
    doomed = [
        owner.session,
        editor.session,
        viewer.session,
        await new_session(cluster.b, http, owner),
        await new_session(cluster.b, http, editor),
    ]
    # Other tenants: the cluster's admin tenant (a session from a and one from b) and a
    # second, unrelated tenant.
    neighbour = await signup(cluster.b, http, tenant=unique("nb"))
    spared = [
        cluster.admin.session,
        await new_session(cluster.b, http, cluster.admin),
        neighbour.session,
        await new_session(cluster.a, http, neighbour),
    ]
    for token in (*doomed, *spared):  # all cached on b
        await proxied(cluster.b, http, token)
        await proxied(cluster.b, http, token)
    expected = {await session_id(cluster.a, http, token) for token in doomed}

    caller = owner.session if by == "tenant-admin" else cluster.operator
    path = f"/.gateway/admin/v1/tenants/{owner.tenant_slug}/sessions/revoke"
    started = time.perf_counter()
    status, body, _ = await get(cluster.a, http, path, caller, method="POST")
    acknowledged = time.perf_counter()
    assert status == 200, body
    assert set(body["revoked"]) == expected, body  # the tenant admin's own session too
    await poll(
        lambda: statuses(cluster.b, http, doomed),
        lambda s: s == [401] * len(doomed),
        timeout=3 * REVOCATION_BOUND,
    )
    done = time.perf_counter()
    MEASURED.setdefault(f"tenant revoke ({by}) sent on a -> all refused on b", []).append(
        done - started
    )
    MEASURED.setdefault(f"tenant revoke ({by}) 200 on a -> all refused on b", []).append(
        done - acknowledged
    )
    assert done - started < REVOCATION_BOUND
    for env in (cluster.a, cluster.b, cluster.w):
        assert await statuses(env, http, doomed) == [401] * len(doomed), env.url
        for token in spared:
            await proxied(env, http, token)
    # The tenant itself is not disabled: its members sign in again.
    again = await new_session(cluster.b, http, editor)
    body, _ = await proxied(cluster.a, http, again)
    assert upstream_headers(body)["x-tenant-id"] == owner.tenant_id


# --------------------------------------------------------------------------------------------
# A replica killed mid-flight
# --------------------------------------------------------------------------------------------

IN_FLIGHT_SECONDS = 2.0  # the upstream holds the in-flight request this long


async def test_a_killed_replica_loses_nothing_it_acknowledged(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    # A dedicated replica `k` (same stores, keys and upstream): the shared ones stay up.
    upstream = cluster.a.upstream
    async with replica(
        cluster.root / "k", upstream, cluster.root / SHARED_STATE, **cluster.stores
    ) as k:
        # A request held by the upstream while k is killed.
        probe = unique("probe")
        slow = f"/slow/{IN_FLIGHT_SECONDS}?probe={probe}"

        def arrived() -> bool:
            return any(r["query_string"] == f"probe={probe}" for r in upstream.requests)

        async with fresh_connections() as cut:
            pending = asyncio.create_task(in_flight(k, cut, slow, cluster.admin.session))
            await poll(lambda: asyncio.sleep(0, arrived()), bool, timeout=5.0)

            # Two acknowledged changes on k: a sign-up (201) and a tenant rule (200)...
            account = await signup(k, http, tenant=unique("kill"))
            deny = {"sub": "admin", "obj": "/reports/*", "act": "DELETE", "eft": "deny"}
            policy = f"/.gateway/admin/v1/tenants/{account.tenant_slug}/policy"
            status, body, _ = await get(
                k, http, policy, account.session, method="PUT", body={"rules": [deny]}
            )
            assert status == 200, body
            # ...then k dies at once: no shutdown, no flushing of anything.
            assert not pending.done()  # still held by the upstream
            started = time.perf_counter()
            code = await kill(k)
            assert code == -signal.SIGKILL, code
            seen, raw, error = await asyncio.wait_for(pending, IN_FLIGHT_SECONDS + 5)
        MEASURED.setdefault("SIGKILL of k -> in-flight request errored", []).append(
            time.perf_counter() - started
        )
        # A connection error, never a (partial) response.
        assert seen is None and raw is None, (seen, raw)
        assert isinstance(error, aiohttp.ClientConnectionError), repr(error)

    # The same request on b succeeds.
    status, body, _ = await get(cluster.b, http, slow, cluster.admin.session)
    assert status == 200 and body == {"slept": IN_FLIGHT_SECONDS}, body

    # The account exists: its session from k works on b, and it signs in on b.
    body, _ = await proxied(cluster.b, http, account.session)
    assert upstream_headers(body)["x-user-id"] == account.user_id
    token = await new_session(cluster.b, http, account)
    # The rule is stored and applies on b (the admin may otherwise do anything).
    status, body, _ = await get(cluster.b, http, policy, token)
    assert status == 200, body
    assert [{key: r[key] for key in deny} for r in body["rules"]] == [deny], body
    status, body, _ = await get(cluster.b, http, "/reports/1", token, method="DELETE")
    assert status == 403, body
    status, body, _ = await get(cluster.b, http, "/reports/1", token)
    assert status == 200, body

    # Both changes were audited, and b serves those events to the tenant admin.
    status, body, _ = await get(cluster.b, http, "/.gateway/admin/v1/audit", token)
    assert status == 200, body
    events = {e["action"]: e for e in body["events"]}
    assert {"auth.signup", "policy.update"} <= set(events), [e["action"] for e in body["events"]]
    signed_up, updated = events["auth.signup"], events["policy.update"]
    assert signed_up["tenant_id"] == account.tenant_id and signed_up["outcome"] == "success"
    assert signed_up["target"] == account.user_id, signed_up
    assert updated["tenant_id"] == account.tenant_id and updated["outcome"] == "success"
    assert updated["target"] == f"tenant:{account.tenant_id}/policy", updated
    assert updated["actor"] == {"type": "user", "id": account.user_id}, updated
    assert updated["details"]["count"] == 1, updated
