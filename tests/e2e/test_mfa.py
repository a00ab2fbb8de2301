"""TOTP MFA against the real `gateway serve` process: enrolment, the half-session, replay,
recovery codes, disabling, tenants' required-MFA roles and the hosted pages.

The process runs on the real clock, so no test waits for a new time step: the first sign-in
after confirming uses the next step's code (inside the ±1 window), later ones recovery codes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pyotp
import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import (
    PASSWORD,
    Account,
    AuthEnv,
    admin_post,
    assert_error,
    auth_env,
    echo,
    http_client,
    post_json,
    session_info,
    set_cookie_value,
    signin,
    signup,
)
from tests.support.gateway_proc import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

MFA = "/.gateway/auth/mfa"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AuthEnv]:
    async with auth_env(tmp_path_factory.mktemp("mfa")) as running:
        yield running


def code(secret: str, steps_ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(int(time.time()) + 30 * steps_ahead)


async def call(
    env: AuthEnv, http: aiohttp.ClientSession, path: str, session: str | None, body: Any = None
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """A same-origin JSON POST with the session cookie (none when `session` is None)."""
    headers = env.same_origin(session) if session else {"Origin": env.origin}
    return await post_json(http, f"{env.url}{path}", {} if body is None else body, headers)


async def hosted_enrolment_page(
    env: AuthEnv, http: aiohttp.ClientSession, account: Account
) -> tuple[int, Any, str]:
    """The hosted enrolment form's answer (status, headers, page) for a signed-in user."""
    async with http.post(
        f"{env.url}/.gateway/mfa/enroll",
        data={"rd": "/private"},
        headers=env.same_origin(account.session),
    ) as resp:
        return resp.status, resp.headers, await resp.text()


async def mfa_status(env: AuthEnv, http: aiohttp.ClientSession, session: str) -> Any:
    async with http.get(f"{env.url}{MFA}", headers=env.cookie(session)) as resp:
        assert resp.status == 200
        return await resp.json()


async def enable_mfa(
    env: AuthEnv, http: aiohttp.ClientSession, account: Account
) -> tuple[str, list[str], str]:
    """Enrols and confirms; returns (secret, recovery codes, the rotated session)."""
    status, body, _ = await call(env, http, f"{MFA}/enroll", account.session)
    assert status == 200, body
    status, confirmed, resp = await call(
        env, http, f"{MFA}/confirm", account.session, {"code": code(body["secret"])}
    )
    assert status == 200, confirmed
    rotated = set_cookie_value(resp, env.cookie_name)
    assert rotated and rotated != account.session
    return body["secret"], body["recovery_codes"], rotated


async def operator_session(env: AuthEnv, http: aiohttp.ClientSession) -> str:
    """A fresh session of a new platform operator (granted with the CLI)."""
    operator = await signup(env, http)
    config = str(env.gw.config_path)
    args = ("operators", "grant", operator.email, "--config", config)
    status, out, err = await run_cli(*args, cwd=env.gw.workdir)
    assert status == 0, (out, err)
    _, _, resp = await signin(env, http, operator.email, PASSWORD)
    session = set_cookie_value(resp, env.cookie_name)
    assert session
    return session


async def half_session(env: AuthEnv, http: aiohttp.ClientSession, account: Account) -> str:
    status, raw, resp = await signin(env, http, account.email, PASSWORD)
    assert status == 200, raw
    assert raw == b'{"mfa_required": true}'
    token = set_cookie_value(resp, env.cookie_name)
    assert token
    return token


async def test_enrol_confirm_and_sign_in_with_totp(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        _, _, resp = await signin(env, http, account.email, PASSWORD)
        other_device = set_cookie_value(resp, env.cookie_name)
        assert other_device
        status, body, _ = await call(env, http, f"{MFA}/enroll", account.session)
        assert status == 200, body
        assert set(body) == {"secret", "otpauth_uri", "recovery_codes"}
        assert body["otpauth_uri"].startswith("otpauth://totp/")
        assert len(body["recovery_codes"]) == 10
        # Not on until confirmed: sign-in still gives a full session.
        status, raw, _ = await signin(env, http, account.email, PASSWORD)
        assert status == 200 and b"mfa_required" not in raw
        status, bad, _ = await call(env, http, f"{MFA}/confirm", account.session, {"code": "0"})
        assert status == 401
        assert_error(bad, "invalid-code")
        status, _, resp = await call(
            env, http, f"{MFA}/confirm", account.session, {"code": code(body["secret"])}
        )
        assert status == 200
        current = set_cookie_value(resp, env.cookie_name)
        assert current
        # Other sessions are revoked; this one was rotated and is now MFA-verified.
        assert (await session_info(env, http, other_device))[0] == 401
        assert (await session_info(env, http, account.session))[0] == 401
        status, info, _ = await session_info(env, http, current)
        assert status == 200 and info["session"]["mfa"] is True

        half = await half_session(env, http, account)
        status, upgraded, resp = await call(env, http, MFA, half, {"code": code(body["secret"], 1)})
        assert status == 200, upgraded
        assert set(upgraded) == {"user", "tenant", "roles"}
        full = set_cookie_value(resp, env.cookie_name)
        assert full and full != half
        assert (await session_info(env, http, half))[0] == 401  # the half-session is gone
        status, info, _ = await session_info(env, http, full)
        assert status == 200 and info["session"]["mfa"] is True
        assert (await echo(env, http, "/private", headers=env.cookie(full)))[0] == 200

        # Replay: the same code on a new half-session is refused.
        again = await half_session(env, http, account)
        status, body2, _ = await call(env, http, MFA, again, {"code": code(body["secret"], 1)})
        assert status == 401
        assert_error(body2, "invalid-code")


async def test_the_half_session_reaches_nothing_but_the_mfa_step(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        await enable_mfa(env, http, account)
        half = await half_session(env, http, account)
        assert (await session_info(env, http, half))[0] == 401
        status, _, _ = await echo(env, http, "/private", headers=env.cookie(half))
        assert status == 401
        browser = {**env.cookie(half), "Accept": "text/html"}
        status, _, resp = await echo(env, http, "/private", headers=browser)
        assert status == 302 and resp.headers["Location"].startswith("/.gateway/login")
        for path, body in [
            (f"{MFA}/enroll", {}),
            (f"{MFA}/disable", {"code": "123456"}),
            ("/.gateway/auth/password/change", {"current_password": PASSWORD, "new_password": "x"}),
            ("/.gateway/auth/email/verify/request", {}),
        ]:
            status, _, _ = await call(env, http, path, half, body)
            assert status == 401, path
        status, _ = await admin_post(
            env, http, f"/tenants/{account.tenant_slug}/invitations", {}, env.same_origin(half)
        )
        assert status == 401
        # Without any session, the MFA step has nothing to upgrade.
        status, _, _ = await call(env, http, MFA, None, {"code": "123456"})
        assert status == 401


async def test_recovery_codes_work_once_and_disable_needs_a_code(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        _, codes, current = await enable_mfa(env, http, account)
        half = await half_session(env, http, account)
        status, _, _ = await call(env, http, MFA, half, {"code": codes[0]})
        assert status == 200
        half = await half_session(env, http, account)
        status, body, _ = await call(env, http, MFA, half, {"code": codes[0]})
        assert status == 401
        assert_error(body, "invalid-code")
        status, _, _ = await call(env, http, MFA, half, {"code": codes[1].upper()})
        assert status == 200
        async with http.get(f"{env.url}{MFA}", headers=env.cookie(current)) as resp:
            assert resp.status == 200
            assert await resp.json() == {"enabled": True, "recovery_codes_left": 8}
        status, body, _ = await call(env, http, f"{MFA}/disable", current, {"code": "000000"})
        assert status == 401
        status, body, _ = await call(env, http, f"{MFA}/disable", current, {"code": codes[2]})
        assert status == 200 and body == {"mfa": False}
        status, raw, _ = await signin(env, http, account.email, PASSWORD)
        assert status == 200 and b"mfa_required" not in raw


async def test_mfa_endpoints_refuse_cross_site_requests(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        headers = {**env.cookie(account.session), "Origin": "https://evil.example"}
        status, body, _ = await post_json(http, f"{env.url}{MFA}/enroll", {}, headers)
        assert status == 403
        assert_error(body, "csrf")


async def test_required_mfa_roles_are_sent_to_enrol(env: AuthEnv) -> None:
    async with http_client() as http:
        admin = await signup(env, http)
        async with http.patch(
            f"{env.url}/.gateway/admin/v1/tenants/{admin.tenant_slug}",
            json={"require_mfa": ["admin"]},
            headers=env.same_origin(await operator_session(env, http)),
        ) as resp:
            assert resp.status == 200, await resp.text()
        status, raw, resp = await signin(env, http, admin.email, PASSWORD)
        assert status == 200
        assert b'"mfa_enrollment_required": true' in raw
        session = set_cookie_value(resp, env.cookie_name)
        assert session
        status, body, resp = await echo(env, http, "/private", headers=env.cookie(session))
        assert status == 403
        assert body["error"]["code"] == "mfa-enrollment-required"
        assert "enrol" in body["error"]["message"]
        assert body["error"]["enroll"] == "/.gateway/mfa/enroll"
        browser = {**env.cookie(session), "Accept": "text/html"}
        status, _, resp = await echo(env, http, "/private?a=1", headers=browser)
        assert status == 302
        assert resp.headers["Location"] == "/.gateway/mfa/enroll?rd=%2Fprivate%3Fa%3D1"
        account = Account(**{**admin.__dict__, "session": session})
        secret, _, verified = await enable_mfa(env, http, account)
        assert (await echo(env, http, "/private", headers=env.cookie(verified)))[0] == 200
        status, body, _ = await call(
            env, http, f"{MFA}/disable", verified, {"code": code(secret, 1)}
        )
        assert status == 403
        assert_error(body, "mfa-required")


async def test_hosted_login_mfa_and_enrolment_pages(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        status, headers, page = await hosted_enrolment_page(env, http, account)
        assert status == 200, page
        assert "<svg" in page and "<script" not in page
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        _, body, _ = await call(env, http, f"{MFA}/enroll", account.session)
        secret = body["secret"]  # a new enrolment replaces the page's one
        await call(env, http, f"{MFA}/confirm", account.session, {"code": code(secret)})
        form = {"email": account.email, "password": PASSWORD, "rd": "/private"}
        async with http.post(f"{env.url}/.gateway/login", data=form, allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == "/.gateway/mfa?rd=%2Fprivate"
            half = set_cookie_value(resp, env.cookie_name)
        assert half
        async with http.get(f"{env.url}/.gateway/mfa?rd=/private", headers=env.cookie(half)) as r:
            assert r.status == 200 and 'name="code"' in await r.text()
        async with http.post(
            f"{env.url}/.gateway/mfa",
            data={"code": code(secret, 1), "rd": "/private"},
            headers=env.same_origin(half),
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/private"
            full = set_cookie_value(resp, env.cookie_name)
        assert full
        assert (await echo(env, http, "/private", headers=env.cookie(full)))[0] == 200


async def test_hosted_mfa_page_without_half_session_goes_to_login(env: AuthEnv) -> None:
    async with (
        http_client() as http,
        http.get(f"{env.url}/.gateway/mfa?rd=/x", allow_redirects=False) as resp,
    ):
        assert resp.status == 303
        assert resp.headers["Location"] == "/.gateway/login?rd=%2Fx"


async def test_hosted_enrolment_confirm_turns_mfa_on_and_rotates_the_session(
    env: AuthEnv,
) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        _, _, page = await hosted_enrolment_page(env, http, account)
        secret = page.split("Or enter this key: <code>", 1)[1].split("</code>", 1)[0]
        confirm = f"{env.url}/.gateway/mfa/enroll/confirm"
        form = {"code": code(secret), "rd": "/private"}
        cross_site = {**env.cookie(account.session), "Origin": "https://evil.example"}
        async with http.post(confirm, data=form, headers=cross_site) as resp:
            assert resp.status == 403  # no same-origin proof: refused, MFA stays off
        assert (await mfa_status(env, http, account.session))["enabled"] is False
        async with http.post(
            confirm, data=form, headers=env.same_origin(account.session), allow_redirects=False
        ) as resp:
            assert (resp.status, resp.headers["Location"]) == (303, "/private")
            rotated = set_cookie_value(resp, env.cookie_name)
        assert rotated and rotated != account.session
        assert await mfa_status(env, http, rotated) == {"enabled": True, "recovery_codes_left": 10}
        assert (await echo(env, http, "/private", headers=env.cookie(rotated)))[0] == 200
