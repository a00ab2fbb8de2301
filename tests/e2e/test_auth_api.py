"""The JSON auth API (`/.gateway/auth/*`) against the real `gateway serve` process.

One gateway serves the whole module; every test makes its own users and tenants.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import (
    PASSWORD,
    SECURE_COOKIE,
    AuthEnv,
    assert_error,
    auth_env,
    cookie_attributes,
    echo,
    http_client,
    new_email,
    post_json,
    session_info,
    set_cookie_headers,
    set_cookie_value,
    signin,
    signup,
    unique,
)
from tests.support.gateway_proc import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SIGNUP = "/.gateway/auth/signup"
SIGNOUT = "/.gateway/auth/signout"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AuthEnv]:
    async with auth_env(tmp_path_factory.mktemp("auth-api")) as running:
        yield running


# --- sign-up ---------------------------------------------------------------------------------


async def test_signup_creates_tenant_and_admin_with_cookie(env: AuthEnv) -> None:
    email, slug = new_email(), unique("acme")
    async with http_client() as http:
        status, body, resp = await post_json(
            http, f"{env.url}{SIGNUP}", {"email": email, "password": PASSWORD, "tenant": slug}
        )
    assert status == 201, body
    assert resp.content_type == "application/json"
    assert set(body) == {"user", "tenant", "roles"}
    assert set(body["user"]) == {"id", "email"}
    assert body["user"]["email"] == email
    assert isinstance(body["user"]["id"], str) and body["user"]["id"]
    assert set(body["tenant"]) == {"id", "slug"}
    assert body["tenant"]["slug"] == slug
    assert isinstance(body["tenant"]["id"], str) and body["tenant"]["id"] != slug
    assert body["roles"] == ["admin"]
    token = set_cookie_value(resp, env.cookie_name)
    assert token, set_cookie_headers(resp)
    # 256 bits of randomness: at least 43 characters of any sane encoding.
    assert len(token) >= 43


async def test_signup_existing_tenant_slug_is_409(env: AuthEnv) -> None:
    async with http_client() as http:
        first = await signup(env, http)
        status, body, resp = await post_json(
            http,
            f"{env.url}{SIGNUP}",
            {"email": new_email(), "password": PASSWORD, "tenant": first.tenant_slug},
        )
    assert status == 409, body
    assert_error(body)
    assert set_cookie_value(resp, env.cookie_name) is None


async def test_signup_existing_email_is_409(env: AuthEnv) -> None:
    async with http_client() as http:
        first = await signup(env, http)
        status, body, resp = await post_json(
            http,
            f"{env.url}{SIGNUP}",
            {"email": first.email, "password": PASSWORD, "tenant": unique("other")},
        )
    assert status == 409, body
    assert_error(body)
    assert set_cookie_value(resp, env.cookie_name) is None


@pytest.mark.parametrize(
    ("password", "hint"),
    [
        ("short-pw1", "10"),  # 9 characters
        ("", "10"),
        ("x" * 1025, "1024"),
        ("qwertyuiop", "common"),
        ("1234567890", "common"),
        ("Password12", "common"),  # the list is case-insensitive
    ],
    ids=["nine-chars", "empty", "too-long", "common-1", "common-2", "common-case"],
)
async def test_signup_weak_password_is_422_with_a_clear_message(
    env: AuthEnv, password: str, hint: str
) -> None:
    slug = unique("weak")
    async with http_client() as http:
        status, body, resp = await post_json(
            http,
            f"{env.url}{SIGNUP}",
            {"email": new_email(), "password": password, "tenant": slug},
        )
        assert status == 422, body
        assert_error(body)
        message = body["error"]["message"]
        assert hint in message, message
        assert "password" in message.lower(), message
        if password:
            assert password not in message
        assert set_cookie_value(resp, env.cookie_name) is None
        # Nothing was created: the slug is still free.
        await signup(env, http, tenant=slug)


async def test_signup_password_equal_to_email_is_422(env: AuthEnv) -> None:
    email = new_email()
    async with http_client() as http:
        status, body, _ = await post_json(
            http, f"{env.url}{SIGNUP}", {"email": email, "password": email, "tenant": unique("t")}
        )
    assert status == 422, body
    assert_error(body)


@pytest.mark.parametrize(
    "raw",
    [b"{", b"not json", b'{"email": "a@b.test",', b"\xff\xfe", b""],
    ids=["open-brace", "text", "truncated", "bad-utf8", "empty"],
)
async def test_signup_malformed_json_is_400(env: AuthEnv, raw: bytes) -> None:
    async with (
        http_client() as http,
        http.post(
            f"{env.url}{SIGNUP}", data=raw, headers={"Content-Type": "application/json"}
        ) as resp,
    ):
        assert resp.status == 400
        assert_error(await resp.json())


@pytest.mark.parametrize(
    "body",
    [[], "a string", 42, None],
    ids=["array", "string", "number", "null"],
)
async def test_signup_json_that_is_not_an_object_is_400(env: AuthEnv, body: object) -> None:
    async with http_client() as http:
        status, data, _ = await post_json(http, f"{env.url}{SIGNUP}", body)
    assert status == 400, data
    assert_error(data)


@pytest.mark.parametrize(
    "body",
    [
        {"password": PASSWORD, "tenant": "missing-email"},
        {"email": "missing-password@example.test", "tenant": "missing-password"},
        {"email": "missing-tenant@example.test", "password": PASSWORD},
        {"email": 7, "password": PASSWORD, "tenant": "email-number"},
        {"email": "not-an-email", "password": PASSWORD, "tenant": "bad-email"},
    ],
    ids=["no-email", "no-password", "no-tenant", "email-number", "bad-email"],
)
async def test_signup_missing_or_invalid_fields_are_refused(
    env: AuthEnv, body: dict[str, object]
) -> None:
    async with http_client() as http:
        status, data, resp = await post_json(http, f"{env.url}{SIGNUP}", body)
    assert status in (400, 422), data
    assert_error(data)
    assert set_cookie_value(resp, env.cookie_name) is None


@pytest.mark.parametrize(
    "slug",
    ["a", "x" * 64, "has space", "under_score", "dot.ted", "caf\u00e9", "../etc", ""],
)
async def test_signup_invalid_tenant_slug_is_refused(env: AuthEnv, slug: str) -> None:
    async with http_client() as http:
        status, data, resp = await post_json(
            http, f"{env.url}{SIGNUP}", {"email": new_email(), "password": PASSWORD, "tenant": slug}
        )
    assert status in (400, 422), data
    assert_error(data)
    assert set_cookie_value(resp, env.cookie_name) is None


@pytest.mark.parametrize("path", [SIGNUP, "/.gateway/auth/signin"], ids=["signup", "signin"])
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
async def test_wrong_content_type_is_415(env: AuthEnv, path: str, content_type: str) -> None:
    body = json.dumps({"email": new_email(), "password": PASSWORD, "tenant": unique("ct")})
    async with (
        http_client() as http,
        http.post(f"{env.url}{path}", data=body, headers={"Content-Type": content_type}) as resp,
    ):
        assert resp.status == 415
        assert_error(await resp.json())
        assert set_cookie_value(resp, env.cookie_name) is None


async def test_signin_malformed_json_is_400(env: AuthEnv) -> None:
    async with (
        http_client() as http,
        http.post(
            f"{env.url}/.gateway/auth/signin",
            data=b"{nope",
            headers={"Content-Type": "application/json"},
        ) as resp,
    ):
        assert resp.status == 400
        assert_error(await resp.json())


# --- sign-in ---------------------------------------------------------------------------------


async def test_signin_returns_the_same_shape_and_a_new_cookie(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        status, raw, resp = await signin(env, http, account.email, account.password)
        assert status == 200, raw
        body = json.loads(raw)
        assert body == {
            "user": {"id": account.user_id, "email": account.email},
            "tenant": {"id": account.tenant_id, "slug": account.tenant_slug},
            "roles": ["admin"],
        }
        token = set_cookie_value(resp, env.cookie_name)
        assert token and token != account.session
        # Naming the tenant explicitly works too.
        status, raw, resp = await signin(
            env, http, account.email, account.password, tenant=account.tenant_slug
        )
        assert status == 200, raw
        assert json.loads(raw)["tenant"]["id"] == account.tenant_id
        # Both sessions are real.
        for value in (token, set_cookie_value(resp, env.cookie_name)):
            assert value
            status, info, _ = await session_info(env, http, value)
            assert status == 200, info
            assert info["user"]["id"] == account.user_id


async def test_signin_email_is_case_insensitive(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        status, raw, _ = await signin(env, http, account.email.upper(), account.password)
    assert status == 200, raw


async def test_signin_failures_are_indistinguishable(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        other = await signup(env, http)
        attempts = {
            "unknown-email": (new_email(), account.password, None),
            "wrong-password": (account.email, account.password + "x", None),
            "not-a-member": (account.email, account.password, other.tenant_slug),
            "unknown-tenant": (account.email, account.password, unique("nosuch")),
            "malformed-email": ("not-an-email", account.password, None),
        }
        results = {}
        for name, (email, password, tenant) in attempts.items():
            status, raw, resp = await signin(env, http, email, password, tenant)
            assert set_cookie_value(resp, env.cookie_name) is None, name
            varying = {"date", "x-request-id", "traceparent", "content-length"}
            names = tuple(sorted(k.lower() for k in resp.headers if k.lower() not in varying))
            results[name] = (status, raw, resp.headers.get("Content-Type"), names)
    statuses = {name: r[0] for name, r in results.items()}
    assert set(statuses.values()) == {401}, statuses
    bodies = {r[1] for r in results.values()}
    assert len(bodies) == 1, results
    assert_error(json.loads(bodies.pop()))
    assert len({r[2] for r in results.values()}) == 1, results
    assert len({r[3] for r in results.values()}) == 1, results


@pytest.mark.parametrize("password", ["q7w8e9r0t1", "q7" * 512], ids=["exactly-10", "exactly-1024"])
async def test_signup_password_length_boundaries_are_accepted(env: AuthEnv, password: str) -> None:
    async with http_client() as http:
        account = await signup(env, http, password=password)
        status, raw, _ = await signin(env, http, account.email, password)
    assert status == 200, raw


async def test_signin_timing_does_not_reveal_whether_the_email_exists(env: AuthEnv) -> None:
    rounds = 15
    async with http_client() as http:
        # One account per round, each failing once: the failure penalty (growing delays from
        # the 5th consecutive failure of one account) must not kick in during the measurement.
        accounts = [await signup(env, http) for _ in range(rounds + 1)]
        # Warm up both paths (connection, thread pool, caches) before measuring.
        await signin(env, http, new_email(), "wrong-password-0")
        await signin(env, http, accounts[-1].email, "wrong-password-0")
        unknown: list[float] = []
        known: list[float] = []
        for i in range(rounds):
            for email, samples in ((new_email(), unknown), (accounts[i].email, known)):
                started = time.perf_counter()
                status, raw, _ = await signin(env, http, email, f"wrong-password-{i}")
                samples.append(time.perf_counter() - started)
                assert status == 401, raw
    ratio = statistics.median(unknown) / statistics.median(known)
    # An Argon2 verify costs tens of milliseconds; skipping it for unknown emails would put
    # the ratio far below 0.5. The band is wide so that scheduling noise never trips it.
    assert 0.5 <= ratio <= 2.0, (
        f"unknown-email median {statistics.median(unknown) * 1000:.1f} ms vs "
        f"known-email median {statistics.median(known) * 1000:.1f} ms (ratio {ratio:.2f})"
    )


# --- session, sign-out -----------------------------------------------------------------------


async def test_session_endpoint_shape(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        before = time.time()
        status, raw, resp = await signin(env, http, account.email, account.password)
        assert status == 200, raw
        token = set_cookie_value(resp, env.cookie_name)
        assert token
        status, body, resp = await session_info(env, http, token)
    assert status == 200, body
    assert set(body) == {"session", "user", "tenant", "roles"}
    session = body["session"]
    assert set(session) == {
        "id",
        "created_at",
        "expires_at",
        "idle_expires_at",
        "auth_method",
        "mfa",
    }
    assert isinstance(session["id"], str) and session["id"]
    assert session["id"] != token
    assert session["auth_method"] == "password"
    assert session["mfa"] is False
    for key in ("created_at", "expires_at", "idle_expires_at"):
        assert isinstance(session[key], int | float), session
    assert before - 5 <= session["created_at"] <= time.time() + 5
    # Defaults: idle timeout 30 min, absolute lifetime 12 h.
    assert session["expires_at"] - session["created_at"] == pytest.approx(43200, abs=5)
    assert session["idle_expires_at"] - session["created_at"] == pytest.approx(1800, abs=5)
    assert body["user"] == {"id": account.user_id, "email": account.email}
    assert body["tenant"] == {"id": account.tenant_id, "slug": account.tenant_slug}
    assert body["roles"] == ["admin"]
    assert resp.headers.get("X-CSRF-Token")


@pytest.mark.parametrize(
    "cookie",
    [None, "gw_session=", "gw_session=garbage", "gw_session=" + "A" * 43, "other=1"],
    ids=["none", "empty", "garbage", "well-formed-unknown", "other-cookie"],
)
async def test_session_endpoint_without_a_valid_session_is_401(
    env: AuthEnv, cookie: str | None
) -> None:
    headers = {"Cookie": cookie} if cookie else {}
    url = f"{env.url}/.gateway/auth/session"
    async with http_client() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 401
        assert_error(await resp.json())


async def test_signout_is_204_and_clears_the_cookie(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        async with http.post(
            f"{env.url}{SIGNOUT}", headers=env.same_origin(account.session)
        ) as resp:
            assert resp.status == 204
            assert await resp.read() == b""
            cleared = [
                h for h in set_cookie_headers(resp) if cookie_attributes(h)[0] == env.cookie_name
            ]
    assert len(cleared) == 1, set_cookie_headers(resp)
    _, value, attrs = cookie_attributes(cleared[0])
    assert value in ("", '""')
    assert attrs.get("max-age") == "0" or "expires" in attrs, cleared
    assert attrs.get("path") == "/"


async def test_signout_replay_old_cookie_is_refused(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        status, _, _ = await echo(env, http, "/private", headers=env.cookie(account.session))
        assert status == 200
        async with http.post(
            f"{env.url}{SIGNOUT}", headers=env.same_origin(account.session)
        ) as resp:
            assert resp.status == 204
        status, body, _ = await session_info(env, http, account.session)
        assert status == 401, body
        status, body, _ = await echo(env, http, "/private", headers=env.cookie(account.session))
        assert status == 401, body
        status, _, resp = await echo(
            env,
            http,
            "/private",
            headers={**env.cookie(account.session), "Accept": "text/html"},
        )
        assert status == 302
        assert resp.headers["Location"].startswith("/.gateway/login?rd=")
    count = sum(1 for r in env.upstream.requests if account.session in json.dumps(r))
    assert count == 0


async def test_signout_revokes_only_that_session(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        status, raw, resp = await signin(env, http, account.email, account.password)
        assert status == 200, raw
        second = set_cookie_value(resp, env.cookie_name)
        assert second
        async with http.post(
            f"{env.url}{SIGNOUT}", headers=env.same_origin(account.session)
        ) as resp:
            assert resp.status == 204
        assert (await session_info(env, http, account.session))[0] == 401
        assert (await session_info(env, http, second))[0] == 200


async def test_signout_without_same_origin_proof_is_403(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        for extra in ({}, {"Origin": "https://evil.example"}, {"Origin": "null"}):
            async with http.post(
                f"{env.url}{SIGNOUT}", headers={**env.cookie(account.session), **extra}
            ) as resp:
                assert resp.status == 403, extra
                assert_error(await resp.json())
                assert set_cookie_value(resp, env.cookie_name) is None
        status, body, _ = await session_info(env, http, account.session)
        assert status == 200, body


# --- session fixation, cookie flags, what the store keeps -----------------------------------


async def test_session_fixation_presented_cookie_is_never_adopted(env: AuthEnv) -> None:
    planted = "attacker-chosen-" + "Q" * 40
    async with http_client() as http:
        account = await signup(env, http)
        # The attacker's value is not a session before...
        status, _, _ = await echo(env, http, "/private", headers=env.cookie(planted))
        assert status == 401
        # ...the victim signs in while the browser still carries it...
        status, raw, resp = await signin(
            env, http, account.email, account.password, headers=env.cookie(planted)
        )
        assert status == 200, raw
        issued = set_cookie_value(resp, env.cookie_name)
        assert issued and issued != planted
        # ...and it never becomes one.
        assert (await session_info(env, http, planted))[0] == 401
        status, _, _ = await echo(env, http, "/private", headers=env.cookie(planted))
        assert status == 401
        assert (await session_info(env, http, issued))[0] == 200
        # Signing in again while presenting a *valid* session also issues a new value.
        status, raw, resp = await signin(
            env, http, account.email, account.password, headers=env.cookie(issued)
        )
        assert status == 200, raw
        again = set_cookie_value(resp, env.cookie_name)
        assert again and again != issued
        assert (await session_info(env, http, again))[0] == 200


async def test_insecure_cookie_flags(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        _, _, resp = await signin(env, http, account.email, account.password)
    headers = set_cookie_headers(resp)
    assert len(headers) == 1, headers
    name, value, attrs = cookie_attributes(headers[0])
    assert name == "gw_session"
    assert value
    assert "secure" not in attrs
    assert "httponly" in attrs
    assert attrs.get("samesite", "").lower() == "lax"
    assert attrs.get("path") == "/"
    assert "domain" not in attrs


async def test_secure_cookie_flags(tmp_path: Path) -> None:
    async with auth_env(tmp_path, cookie={"secure": True}) as secure_env:
        assert secure_env.cookie_name == SECURE_COOKIE
        async with http_client() as http:
            account = await signup(secure_env, http)
            _, _, resp = await signin(secure_env, http, account.email, account.password)
            headers = set_cookie_headers(resp)
            assert len(headers) == 1, headers
            name, value, attrs = cookie_attributes(headers[0])
            assert name == SECURE_COOKIE
            assert value
            assert "secure" in attrs
            assert "httponly" in attrs
            assert attrs.get("samesite", "").lower() == "lax"
            assert attrs.get("path") == "/"
            assert "domain" not in attrs
            # The insecure name is not a credential on a secure gateway.
            async with http.get(
                f"{secure_env.url}/.gateway/auth/session",
                headers={"Cookie": f"gw_session={value}"},
            ) as r:
                assert r.status == 401
            async with http.get(
                f"{secure_env.url}/.gateway/auth/session",
                headers={"Cookie": f"{SECURE_COOKIE}={value}"},
            ) as r:
                assert r.status == 200
            # Sign-out must clear it with the same attributes, or browsers ignore the deletion.
            async with http.post(
                f"{secure_env.url}{SIGNOUT}",
                headers={"Cookie": f"{SECURE_COOKIE}={value}", "Origin": secure_env.origin},
            ) as r:
                assert r.status == 204
                cleared = [h for h in set_cookie_headers(r) if h.startswith(SECURE_COOKIE + "=")]
            assert len(cleared) == 1, set_cookie_headers(r)
            _, gone, attrs = cookie_attributes(cleared[0])
            assert gone in ("", '""')
            assert "secure" in attrs
            assert attrs.get("path") == "/"
            assert "domain" not in attrs


def _state_files(state_dir: Path) -> list[Path]:
    return [p for p in state_dir.rglob("*") if p.is_file()]


async def test_store_holds_no_raw_password_or_token(env: AuthEnv) -> None:
    password = "unique-secret-" + unique("pw")
    async with http_client() as http:
        account = await signup(env, http, password=password)
        status, raw, resp = await signin(env, http, account.email, password)
        assert status == 200, raw
        second = set_cookie_value(resp, env.cookie_name)
        assert second
        # The session is used (last-seen updates) so any write path has run.
        assert (await session_info(env, http, second))[0] == 200
    files = _state_files(env.state_dir)
    assert any(p.name.startswith("gateway.db") for p in files), files
    needles = {
        "password": password.encode(),
        "signup cookie": account.session.encode(),
        "signin cookie": second.encode(),
    }
    for path in files:
        data = path.read_bytes()
        for what, needle in needles.items():
            assert needle not in data, f"{what} found in {path}"
            assert needle.decode().encode("utf-16-le") not in data, f"{what} in {path}"


async def test_logs_hold_no_raw_password_or_token(env: AuthEnv) -> None:
    password = "log-secret-" + unique("pw")
    async with http_client() as http:
        account = await signup(env, http, password=password)
        await signin(env, http, account.email, password + "-wrong")
        status, raw, resp = await signin(env, http, account.email, password)
        assert status == 200, raw
    logs = env.gw.logs()
    assert password not in logs
    assert account.session not in logs
    token = set_cookie_value(resp, env.cookie_name)
    assert token and token not in logs


async def test_racing_signups_with_the_same_email(env: AuthEnv) -> None:
    email = new_email()

    async def attempt() -> tuple[int, object]:
        async with http_client() as http:
            status, body, _ = await post_json(
                http,
                f"{env.url}{SIGNUP}",
                {"email": email, "password": PASSWORD, "tenant": unique("race")},
            )
            return status, body

    results = await asyncio.gather(*(attempt() for _ in range(2)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [201, 409], results
    loser = next(body for status, body in results if status == 409)
    assert_error(loser)
    async with http_client() as http:
        status, raw, _ = await signin(env, http, email, PASSWORD)
    assert status == 200, raw


async def test_racing_signups_with_the_same_tenant(env: AuthEnv) -> None:
    slug = unique("race-t")

    async def attempt() -> int:
        async with http_client() as http:
            status, _, _ = await post_json(
                http,
                f"{env.url}{SIGNUP}",
                {"email": new_email(), "password": PASSWORD, "tenant": slug},
            )
            return status

    statuses = sorted(await asyncio.gather(attempt(), attempt()))
    assert statuses == [201, 409]


# --- bootstrap CLI ---------------------------------------------------------------------------


def _one_line_error(code: int, out: str, err: str) -> str:
    assert code != 0, (out, err)
    assert "Traceback" not in err + out, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


async def test_bootstrap_cli_then_sign_in(env: AuthEnv) -> None:
    assert env.gw.config_path is not None
    config = ("--config", str(env.gw.config_path))
    state = ("--state-dir", str(env.state_dir))
    cwd = env.gw.workdir
    slug, email = unique("acme"), new_email()
    password = "cli-" + unique("secret")

    code, out, err = await run_cli("tenants", "create", slug, *config, cwd=cwd)
    assert code == 0, err
    assert slug in out
    code, out, err = await run_cli(
        "users",
        "create",
        email,
        "--tenant",
        slug,
        "--role",
        "editor",
        "--password-stdin",
        *state,
        cwd=cwd,
        stdin=f"{password}\n".encode(),
    )
    assert code == 0, err
    assert password not in out + err
    code, out, err = await run_cli("operators", "grant", email, *config, cwd=cwd)
    assert code == 0, err

    async with http_client() as http:
        status, raw, resp = await signin(env, http, email, password)
        assert status == 200, raw
        body = json.loads(raw)
        assert body["roles"] == ["editor"]
        assert body["tenant"]["slug"] == slug
        assert body["user"]["email"] == email
        token = set_cookie_value(resp, env.cookie_name)
        assert token
        # The operator grant took effect: this editor of `slug` administers another tenant.
        other = await signup(env, http)
        status, data, _ = await post_json(
            http,
            f"{env.url}/.gateway/admin/v1/tenants/{other.tenant_slug}/invitations",
            {"email": new_email(), "role": "viewer"},
            env.same_origin(token),
        )
        assert status == 201, data


CLI_ERROR_CASES = [
    ("unknown-tenant", b"a-long-enough-pass-9\n", "tenant"),
    ("weak-password", b"short\n", "password"),
    ("common-password", b"qwertyuiop\n", "password"),
    ("no-password-stdin", b"a-long-enough-pass-9\n", "password-stdin"),
    ("empty-stdin", b"", "password"),
]


async def test_bootstrap_cli_user_errors_are_one_line(env: AuthEnv) -> None:
    assert env.gw.config_path is not None
    slug = unique("cli")
    cwd = env.gw.workdir
    config = ("--config", str(env.gw.config_path))
    code, _, err = await run_cli("tenants", "create", slug, *config, cwd=cwd)
    assert code == 0, err
    for case, stdin, expected in CLI_ERROR_CASES:
        tenant = unique("nosuch") if case == "unknown-tenant" else slug
        args = ["users", "create", new_email(), "--tenant", tenant, "--role", "viewer", *config]
        if case != "no-password-stdin":
            args.append("--password-stdin")
        code, out, err = await run_cli(*args, cwd=cwd, stdin=stdin)
        line = _one_line_error(code, out, err)
        assert expected in line.lower(), (case, line)
        secret = stdin.decode().strip()
        if secret:
            assert secret not in line, case


async def test_bootstrap_cli_other_errors_are_one_line(env: AuthEnv) -> None:
    assert env.gw.config_path is not None
    cwd = env.gw.workdir
    config = ("--config", str(env.gw.config_path))
    slug = unique("dup")
    assert (await run_cli("tenants", "create", slug, *config, cwd=cwd))[0] == 0
    for args in (
        ("tenants", "create", slug, *config),  # taken
        ("tenants", "create", "Not A Slug!", *config),
        ("operators", "grant", new_email(), *config),  # no such account
    ):
        code, out, err = await run_cli(*args, cwd=cwd)
        _one_line_error(code, out, err)
