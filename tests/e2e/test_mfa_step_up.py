"""Step-up MFA for admin actions, and tenants' `require_mfa` on the admin API, against the real
`gateway serve` process.

The gateway runs with a short `mfa.step_up_seconds` (2 s): a session is fresh right after a
code and goes stale by itself. No test sleeps for a fixed time: `until_stale` polls an admin
mutation that changes nothing (an invitation without fields: 422 once past the MFA gate)
until the gateway answers 401 `mfa-step-up-required`. TOTP codes are never reused by
accident: each step's code is kept and replayed on purpose; step-ups use recovery codes.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import (
    ADMIN_PREFIX,
    Account,
    AuthEnv,
    admin_post,
    assert_error,
    auth_env,
    bearer,
    create_api_key,
    create_service_account,
    csrf_token,
    http_client,
    new_email,
    post_json,
    session_info,
    set_cookie_value,
    signup,
)
from tests.e2e.test_mfa import MFA, call, code, enable_mfa, half_session, operator_session

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

WINDOW = 2  # mfa.step_up_seconds of the module's gateway
STEP_UP = "mfa-step-up-required"
CONSOLE = "/.gateway/console"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AuthEnv]:
    workdir = tmp_path_factory.mktemp("mfa-step-up")
    async with auth_env(workdir, mfa={"step_up_seconds": WINDOW}) as running:
        yield running


async def mfa_admin(env: AuthEnv, http: aiohttp.ClientSession) -> tuple[Account, str, list[str]]:
    """A new tenant admin with MFA on; `session` is the one that confirmed it (fresh now)."""
    admin = await signup(env, http)
    secret, codes, session = await enable_mfa(env, http, admin)
    return dataclasses.replace(admin, session=session), secret, codes


async def probe(env: AuthEnv, http: aiohttp.ClientSession, admin: Account, session: str) -> Any:
    """An admin mutation that changes nothing: (status, body, response)."""
    url = f"{env.url}{ADMIN_PREFIX}/tenants/{admin.tenant_slug}/invitations"
    return await post_json(http, url, {}, env.same_origin(session))


async def until_stale(
    env: AuthEnv, http: aiohttp.ClientSession, admin: Account, session: str
) -> tuple[Any, aiohttp.ClientResponse]:
    """Waits until the session's last code is older than the window; the 401 (body, response)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WINDOW + 15
    while True:
        status, body, resp = await probe(env, http, admin, session)
        if status == 401:
            return body, resp
        assert status == 422, body  # past the gate: the body lacks its fields
        assert loop.time() < deadline, "the session never went stale"
        await asyncio.sleep(0.1)


async def invite(
    env: AuthEnv, http: aiohttp.ClientSession, admin: Account, headers: dict[str, str]
) -> tuple[int, Any]:
    body = {"email": new_email(), "role": "viewer"}
    return await admin_post(env, http, f"/tenants/{admin.tenant_slug}/invitations", body, headers)


async def admin_call(
    env: AuthEnv, http: aiohttp.ClientSession, method: str, path: str, session: str
) -> tuple[int, Any]:
    async with http.request(
        method, f"{env.url}{ADMIN_PREFIX}{path}", json={}, headers=env.same_origin(session)
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_admin_changes_need_a_recent_code_reading_does_not(env: AuthEnv) -> None:
    async with http_client() as http:
        admin, secret, codes = await mfa_admin(env, http)
        slug = admin.tenant_slug
        # Turning MFA on proved a code on this session: it may act at once.
        assert (await invite(env, http, admin, env.same_origin(admin.session)))[0] == 201
        # So may a session that just completed the MFA sign-in step.
        half = await half_session(env, http, admin)
        signin_code = code(secret, 1)
        status, _, resp = await call(env, http, MFA, half, {"code": signin_code})
        assert status == 200
        full = set_cookie_value(resp, env.cookie_name)
        assert full
        assert (await invite(env, http, admin, env.same_origin(full)))[0] == 201

        # Once the code is older than the window, every mutation is refused ...
        body, resp = await until_stale(env, http, admin, full)
        assert_error(body, STEP_UP)
        assert body["error"]["step_up"] == MFA
        assert resp.headers["Link"] == f'<{MFA}>; rel="mfa-step-up"'
        assert resp.headers["Cache-Control"] == "no-store"
        for method, path in [
            ("DELETE", "/keys/k_missing"),
            ("PUT", f"/tenants/{slug}/members/{admin.user_id}"),
            ("PUT", f"/tenants/{slug}/policy"),
            ("POST", f"/users/{admin.user_id}/sessions/revoke"),
            ("PUT", f"/tenants/{slug}/secrets/db-password"),
        ]:
            status, body = await admin_call(env, http, method, path, full)
            assert status == 401, (method, path, body)
            assert_error(body, STEP_UP)
        # ... while reading is not an action.
        for path in [f"/tenants/{slug}/service-accounts", "/audit", "/sessions"]:
            async with http.get(f"{env.url}{ADMIN_PREFIX}{path}", headers=env.cookie(full)) as r:
                assert r.status == 200, (path, await r.text())

        # Step-up on the full session: the sign-in's code again is a replay; cross-site is
        # refused; a recovery code works once.
        status, body, _ = await call(env, http, MFA, full, {"code": signin_code})
        assert status == 401
        assert_error(body, "invalid-code")
        cross = {**env.cookie(full), "Origin": "https://evil.example"}
        status, body, _ = await post_json(http, f"{env.url}{MFA}", {"code": codes[0]}, cross)
        assert status == 403
        assert_error(body, "csrf")
        status, view, resp = await call(env, http, MFA, full, {"code": codes[0]})
        assert status == 200, view
        assert set(view) == {"user", "tenant", "roles"}
        stepped = set_cookie_value(resp, env.cookie_name)
        assert stepped and stepped != full
        assert (await session_info(env, http, full))[0] == 401  # the token was rotated
        status, info, _ = await session_info(env, http, stepped)
        assert status == 200 and info["session"]["mfa"] is True
        assert (await invite(env, http, admin, env.same_origin(stepped)))[0] == 201
        status, body, _ = await call(env, http, MFA, stepped, {"code": codes[0]})
        assert status == 401
        assert_error(body, "invalid-code")

        # Audited: the rotation (tenant's chain) and the code check (the user's, operators).
        async with http.get(
            f"{env.url}{ADMIN_PREFIX}/audit?action=session.rotate", headers=env.cookie(stepped)
        ) as r:
            reasons = [e["details"]["reason"] for e in (await r.json())["events"]]
        assert "mfa-step-up-recovery" in reasons
        operator = await operator_session(env, http)
        async with http.get(
            f"{env.url}{ADMIN_PREFIX}/audit?action=auth.mfa&limit=1000",
            headers=env.cookie(operator),
        ) as r:
            events = [e for e in (await r.json())["events"] if e["target"] == admin.user_id]
        seen = [(e["outcome"], e["details"]) for e in events]
        assert seen == [
            ("success", {"method": "totp"}),
            ("failure", {"purpose": "step-up"}),
            ("success", {"method": "recovery", "purpose": "step-up"}),
            ("failure", {"purpose": "step-up"}),
        ]


async def test_api_keys_and_users_without_mfa_are_not_asked_to_step_up(env: AuthEnv) -> None:
    async with http_client() as http:
        admin, _, _ = await mfa_admin(env, http)
        account = await create_service_account(env, http, admin, roles=["admin"])
        key = (await create_api_key(env, http, admin, account["id"]))["key"]
        plain = await signup(env, http)  # no MFA: nothing to step up with
        await until_stale(env, http, admin, admin.session)
        assert (await invite(env, http, admin, bearer(key)))[0] == 201
        status, _, _ = await probe(env, http, plain, plain.session)
        assert status == 422


async def test_required_mfa_roles_must_enrol_before_using_the_admin_api(env: AuthEnv) -> None:
    async with http_client() as http:
        admin = await signup(env, http)
        account = await create_service_account(env, http, admin, roles=["admin"])
        key = (await create_api_key(env, http, admin, account["id"]))["key"]
        async with http.patch(
            f"{env.url}{ADMIN_PREFIX}/tenants/{admin.tenant_slug}",
            json={"require_mfa": ["admin"]},
            headers=env.same_origin(await operator_session(env, http)),
        ) as resp:
            assert resp.status == 200, await resp.text()
        status, body = await invite(env, http, admin, env.same_origin(admin.session))
        assert status == 403
        assert_error(body, "mfa-enrollment-required")
        assert body["error"]["enroll"] == "/.gateway/mfa/enroll"
        path = f"{ADMIN_PREFIX}/tenants/{admin.tenant_slug}/service-accounts"
        async with http.get(f"{env.url}{path}", headers=env.cookie(admin.session)) as r:
            assert r.status == 403  # such a session reaches nothing, as on proxied routes
        # A service account has no MFA: the tenant's rule does not concern it.
        assert (await invite(env, http, admin, bearer(key)))[0] == 201
        # Enrolling makes this very session MFA-verified (and fresh).
        _, _, verified = await enable_mfa(env, http, admin)
        assert (await invite(env, http, admin, env.same_origin(verified)))[0] == 201


async def test_the_console_sends_a_stale_session_to_the_mfa_page_and_back(env: AuthEnv) -> None:
    async with http_client() as http:
        admin, _, codes = await mfa_admin(env, http)
        await until_stale(env, http, admin, admin.session)
        revoke = f"{env.url}{CONSOLE}/sessions/s_missing/revoke"

        async def post_revoke(session: str, accept: str | None = None) -> aiohttp.ClientResponse:
            form = {"csrf": await csrf_token(env, http, session)}
            headers = {**env.same_origin(session), **({"Accept": accept} if accept else {})}
            async with http.post(revoke, data=form, headers=headers, allow_redirects=False) as r:
                await r.read()
                return r

        # The console's script gets the API's answer; a plain form post, the MFA page.
        resp = await post_revoke(admin.session, "application/json")
        assert resp.status == 401
        resp = await post_revoke(admin.session)
        assert resp.status == 303
        page = resp.headers["Location"]
        assert page == "/.gateway/mfa?rd=%2F.gateway%2Fconsole"
        async with http.get(f"{env.url}{page}", headers=env.cookie(admin.session)) as r:
            text = await r.text()
            assert r.status == 200 and 'name="code"' in text and "confirm it is you" in text
        async with http.post(
            f"{env.url}/.gateway/mfa",
            data={"code": codes[0], "rd": CONSOLE},
            headers={**env.cookie(admin.session), "Origin": "https://evil.example"},
            allow_redirects=False,
        ) as r:
            assert r.status == 403  # a cross-site form cannot spend the user's code
        async with http.post(
            f"{env.url}/.gateway/mfa",
            data={"code": codes[0], "rd": CONSOLE},
            headers=env.same_origin(admin.session),
            allow_redirects=False,
        ) as r:
            assert r.status == 303 and r.headers["Location"] == CONSOLE
            stepped = set_cookie_value(r, env.cookie_name)
        assert stepped and stepped != admin.session
        # Now the revocation goes through (the session does not exist: back to the console).
        resp = await post_revoke(stepped)
        assert resp.status == 303
        assert resp.headers["Location"] == f"{CONSOLE}?tenant={admin.tenant_id}"
        assert (await post_revoke(stepped, "application/json")).status == 404


async def test_zero_turns_step_up_off(tmp_path: Path) -> None:
    async with auth_env(tmp_path, mfa={"step_up_seconds": WINDOW}) as short, http_client() as http:
        admin, _, _ = await mfa_admin(short, http)
        await until_stale(short, http, admin, admin.session)
    # The same state (and session) under a gateway configured with step_up_seconds: 0.
    async with auth_env(tmp_path, mfa={"step_up_seconds": 0}) as off, http_client() as http:
        assert (await invite(off, http, admin, off.same_origin(admin.session)))[0] == 201
