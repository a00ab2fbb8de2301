"""OIDC sign-in per tenant, end to end: the real gateway, the echo upstream, a loopback IdP.

The in-process suite (tests/unit/test_oidc.py) covers every tampering case; this one proves
the wiring of the real process: routes, flow cookie, session and identity headers upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio
from yarl import URL

from tests.e2e.auth_helpers import (
    Account,
    AuthEnv,
    auth_env,
    echo,
    http_client,
    session_info,
    set_cookie_value,
    signup,
    unique,
    upstream_headers,
)
from tests.support.fake_oidc import FakeOidc, provider_config, run_fake_oidc

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

FLOW = "gw_oidc"


@dataclass
class Env:
    auth: AuthEnv
    idp: FakeOidc
    admin: Account
    jit_tenant: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    tenant, jit_tenant = unique("oidc"), unique("jit")
    async with run_fake_oidc() as idp:
        providers = [
            provider_config(idp, tenant),
            provider_config(idp, jit_tenant, jit={"enabled": True, "role": "editor"}),
        ]
        workdir = tmp_path_factory.mktemp("oidc")
        async with auth_env(workdir, oidc={"providers": providers}) as running:
            async with http_client() as http:
                admin = await signup(running, http, email=f"admin@{tenant}.test", tenant=tenant)
                await signup(running, http, email=f"admin@{jit_tenant}.test", tenant=jit_tenant)
            yield Env(running, idp, admin, jit_tenant)


async def login(
    env: Env, http: aiohttp.ClientSession, tenant: str, rd: str, *, state_suffix: str = ""
) -> aiohttp.ClientResponse:
    base = env.auth.url
    async with http.get(
        f"{base}/.gateway/oidc/{tenant}/start", params={"rd": rd}, allow_redirects=False
    ) as start:
        assert start.status == 302, await start.text()
        flow = set_cookie_value(start, FLOW)
        authorize = start.headers["Location"]
    async with http.get(authorize, allow_redirects=False) as consent:
        assert consent.status == 302
        callback = URL(consent.headers["Location"])
    assert str(callback).startswith(f"{base}/.gateway/oidc/callback?")
    callback = callback.update_query(state=callback.query["state"] + state_suffix)
    async with http.get(
        callback, headers={"Cookie": f"{FLOW}={flow}"}, allow_redirects=False
    ) as resp:
        await resp.read()
    return resp


async def test_a_member_signs_in_and_reaches_the_app(env: Env) -> None:
    env.idp.user = {"email": env.admin.email, "email_verified": True}
    async with http_client() as http:
        resp = await login(env, http, env.admin.tenant_slug, "/echo/after-login")
        assert resp.status == 303 and resp.headers["Location"] == "/echo/after-login"
        session = set_cookie_value(resp, env.auth.cookie_name)
        assert session
        status, body, _ = await session_info(env.auth, http, session)
        assert status == 200 and body["session"]["auth_method"] == "oidc"
        assert body["user"]["id"] == env.admin.user_id
        status, echoed, _ = await echo(
            env.auth, http, "/echo/app", headers=env.auth.cookie(session)
        )
        assert status == 200
        seen = upstream_headers(echoed)
        assert seen["x-user-email"] == env.admin.email
        assert seen["x-tenant-slug"] == env.admin.tenant_slug


async def test_a_tampered_state_signs_nobody_in(env: Env) -> None:
    env.idp.user = {"email": env.admin.email, "email_verified": True}
    async with http_client() as http:
        resp = await login(env, http, env.admin.tenant_slug, "/", state_suffix="x")
    assert resp.status == 400
    assert set_cookie_value(resp, env.auth.cookie_name) is None


async def test_an_unknown_email_without_jit_is_refused(env: Env) -> None:
    env.idp.user = {"email": f"{unique('nobody')}@example.test", "email_verified": True}
    async with http_client() as http:
        resp = await login(env, http, env.admin.tenant_slug, "/")
    assert resp.status == 403


async def test_jit_creates_the_member_with_the_default_role(env: Env) -> None:
    email = f"{unique('new')}@example.test"
    env.idp.user = {"email": email, "email_verified": True}
    async with http_client() as http:
        resp = await login(env, http, env.jit_tenant, "/")
        assert resp.status == 303
        session = set_cookie_value(resp, env.auth.cookie_name)
        assert session
        status, body, _ = await session_info(env.auth, http, session)
    assert status == 200 and body["user"]["email"] == email and body["roles"] == ["editor"]
    assert body["tenant"]["slug"] == env.jit_tenant


async def test_a_forged_id_token_is_refused(env: Env) -> None:
    env.idp.user = {"email": env.admin.email, "email_verified": True}
    env.idp.id_token_overrides = {"aud": "someone-else"}
    try:
        async with http_client() as http:
            resp = await login(env, http, env.admin.tenant_slug, "/")
    finally:
        env.idp.id_token_overrides = {}
    assert resp.status == 401
