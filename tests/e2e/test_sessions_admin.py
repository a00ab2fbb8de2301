"""Session administration through the admin API and the CLI, against the real `gateway serve`.

Sessions are listed by public id (never a token); a tenant admin reaches their tenant only
(another tenant's sessions answer 404); revocations take effect at once in the serving
process, and a CLI revocation reaches the running gateway within 1 s on the embedded default.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import (
    PASSWORD,
    Account,
    AuthEnv,
    assert_error,
    http_client,
    session_info,
    set_cookie_value,
    signin,
    signup,
    unique,
)
from tests.e2e.test_authorization import admin_call, cli_member, gateway_env, invite_member
from tests.support.gateway_proc import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@dataclass
class Org:
    env: AuthEnv
    admin: Account  # admin of tenant A
    viewer: Account  # viewer of tenant A
    other: Account  # admin of tenant B
    operator: str  # session of an operator (member of tenant C)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def org(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Org]:
    async with gateway_env(tmp_path_factory.mktemp("sessions-admin")) as env:
        async with http_client() as http:
            admin = await signup(env, http, tenant=unique("ta"))
            viewer = await invite_member(env, http, admin, "viewer")
            other = await signup(env, http, tenant=unique("tb"))
            ops = await signup(env, http, tenant=unique("tc"))
        _, operator = await cli_member(env, ops.tenant_slug, "viewer", operator=True)
        yield Org(env, admin, viewer, other, operator)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_client() as client:
        yield client


async def new_session(env: AuthEnv, http: aiohttp.ClientSession, account: Account) -> str:
    """A fresh session of `account` (sign-in through the API); its cookie value."""
    status, raw, resp = await signin(env, http, account.email, PASSWORD)
    assert status == 200, raw
    token = set_cookie_value(resp, env.cookie_name)
    assert token
    return token


async def session_id_of(env: AuthEnv, http: aiohttp.ClientSession, token: str) -> str:
    status, body, _ = await session_info(env, http, token)
    assert status == 200, body
    return str(body["session"]["id"])


async def wait_rejected(
    env: AuthEnv, http: aiohttp.ClientSession, token: str, within: float
) -> float:
    """Polls the session endpoint until the token is refused; returns how long it took."""
    start = time.monotonic()
    while True:
        status, _, _ = await session_info(env, http, token)
        elapsed = time.monotonic() - start
        if status == 401:
            return elapsed
        assert elapsed < within, f"still accepted after {elapsed:.2f}s"
        await asyncio.sleep(0.02)


async def test_list_has_the_contract_shape_and_no_tokens(
    org: Org, http: aiohttp.ClientSession
) -> None:
    token = await new_session(org.env, http, org.viewer)
    sid = await session_id_of(org.env, http, token)
    status, body = await admin_call(org.env, http, "GET", "/sessions", org.admin.session)
    assert status == 200, body
    found = {s["id"]: s for s in body["sessions"]}
    assert sid in found
    view = found[sid]
    assert set(view) == {"id", "user", "tenant", "created_at", "last_seen_at", "ip", "user_agent"}
    assert view["user"] == {"id": org.viewer.user_id, "email": org.viewer.email}
    assert view["tenant"] == {"id": org.admin.tenant_id, "slug": org.admin.tenant_slug}
    assert view["ip"] == "127.0.0.1"
    text = json.dumps(body)
    assert token not in text and org.admin.session not in text
    assert {s["tenant"]["id"] for s in body["sessions"]} == {org.admin.tenant_id}


async def test_user_filter(org: Org, http: aiohttp.ClientSession) -> None:
    status, body = await admin_call(
        org.env, http, "GET", f"/sessions?user={org.viewer.user_id}", org.admin.session
    )
    assert status == 200, body
    assert body["sessions"] and {s["user"]["id"] for s in body["sessions"]} == {org.viewer.user_id}


async def test_cross_tenant_sessions_answer_404(org: Org, http: aiohttp.ClientSession) -> None:
    status, body = await admin_call(
        org.env, http, "GET", f"/sessions?tenant={org.other.tenant_slug}", org.admin.session
    )
    assert status == 404, body
    assert_error(body, "not-found")
    other_sid = await session_id_of(org.env, http, org.other.session)
    status, body = await admin_call(
        org.env, http, "DELETE", f"/sessions/{other_sid}", org.admin.session
    )
    assert status == 404, body
    status, body = await admin_call(
        org.env, http, "POST", f"/users/{org.other.user_id}/sessions/revoke", org.admin.session
    )
    assert status == 404, body
    status, body = await admin_call(
        org.env,
        http,
        "POST",
        f"/tenants/{org.other.tenant_slug}/sessions/revoke",
        org.admin.session,
    )
    assert status == 404, body
    status, _, _ = await session_info(org.env, http, org.other.session)
    assert status == 200


async def test_viewer_is_refused(org: Org, http: aiohttp.ClientSession) -> None:
    status, body = await admin_call(org.env, http, "GET", "/sessions", org.viewer.session)
    assert status == 403, body


async def test_operator_sees_every_tenant(org: Org, http: aiohttp.ClientSession) -> None:
    status, body = await admin_call(org.env, http, "GET", "/sessions", org.operator)
    assert status == 200, body
    tenants = {s["tenant"]["id"] for s in body["sessions"]}
    assert {org.admin.tenant_id, org.other.tenant_id} <= tenants
    status, body = await admin_call(
        org.env, http, "GET", f"/sessions?tenant={org.other.tenant_slug}", org.operator
    )
    assert status == 200 and {s["tenant"]["id"] for s in body["sessions"]} == {org.other.tenant_id}


async def test_delete_one_session(org: Org, http: aiohttp.ClientSession) -> None:
    token = await new_session(org.env, http, org.viewer)
    sid = await session_id_of(org.env, http, token)
    status, body = await admin_call(org.env, http, "DELETE", f"/sessions/{sid}", org.admin.session)
    assert status == 204, body
    assert (await session_info(org.env, http, token))[0] == 401
    status, body = await admin_call(org.env, http, "DELETE", f"/sessions/{sid}", org.admin.session)
    assert status == 404, body


async def test_revoke_all_of_a_user(org: Org, http: aiohttp.ClientSession) -> None:
    tokens = [await new_session(org.env, http, org.viewer) for _ in range(2)]
    status, body = await admin_call(
        org.env, http, "POST", f"/users/{org.viewer.user_id}/sessions/revoke", org.admin.session
    )
    assert status == 200, body
    assert len(body["revoked"]) >= 2
    for token in tokens:
        assert (await session_info(org.env, http, token))[0] == 401


async def test_revoke_all_of_a_tenant(org: Org, http: aiohttp.ClientSession) -> None:
    lone = await signup(org.env, http, tenant=unique("td"))
    extra = await new_session(org.env, http, lone)
    status, body = await admin_call(
        org.env, http, "POST", f"/tenants/{lone.tenant_slug}/sessions/revoke", org.operator
    )
    assert status == 200, body
    assert len(body["revoked"]) == 2
    for token in (lone.session, extra):
        assert (await session_info(org.env, http, token))[0] == 401
    assert (await session_info(org.env, http, org.admin.session))[0] == 200


async def cli(org: Org, *args: str) -> tuple[int, str, str]:
    return await run_cli(*args, "--config", str(org.env.gw.config_path), cwd=org.env.gw.workdir)


async def test_cli_revocation_reaches_the_gateway_within_a_second(
    org: Org, http: aiohttp.ClientSession
) -> None:
    token = await new_session(org.env, http, org.viewer)
    sid = await session_id_of(org.env, http, token)  # now cached by the gateway
    code, out, err = await cli(org, "sessions", "list", "--tenant", org.admin.tenant_slug, "--json")
    assert code == 0, err
    assert sid in {json.loads(line)["id"] for line in out.splitlines()}
    assert token not in out
    code, out, err = await cli(org, "sessions", "revoke", sid)
    assert code == 0, (out, err)
    assert await wait_rejected(org.env, http, token, within=1.0) < 1.0


async def test_cli_revokes_a_user_and_a_tenant(org: Org, http: aiohttp.ClientSession) -> None:
    token = await new_session(org.env, http, org.viewer)
    await session_id_of(org.env, http, token)
    code, out, err = await cli(org, "sessions", "revoke", "--user", org.viewer.email)
    assert code == 0, (out, err)
    await wait_rejected(org.env, http, token, within=1.0)
    lone = await signup(org.env, http, tenant=unique("te"))
    code, out, err = await cli(org, "sessions", "revoke", "--tenant", lone.tenant_slug)
    assert code == 0 and "revoked 1 session" in out, (out, err)
    await wait_rejected(org.env, http, lone.session, within=1.0)


async def test_cli_revoke_needs_exactly_one_target(org: Org) -> None:
    code, _, err = await cli(org, "sessions", "revoke")
    assert code == 2 and "exactly one" in err
    code, _, err = await cli(org, "sessions", "revoke", "nope-session")
    assert code == 1 and "no active session" in err
