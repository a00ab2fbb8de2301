"""Service accounts, API keys and invitations through the admin API, end to end.

Admins act with their session cookie and a same-origin `Origin` (the CSRF proof); keys are
then used as `Authorization: Bearer gw_…` on proxied requests.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import (
    ADMIN_PREFIX,
    PASSWORD,
    Account,
    AuthEnv,
    admin_post,
    assert_error,
    auth_env,
    bearer,
    create_api_key,
    create_service_account,
    echo,
    http_client,
    new_email,
    post_json,
    set_cookie_value,
    signin,
    signup,
    upstream_header_list,
    upstream_headers,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@dataclass
class Admins:
    a: Account
    b: Account


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AuthEnv]:
    async with auth_env(tmp_path_factory.mktemp("keys"), tenancy={"header": True}) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def admins(env: AuthEnv) -> Admins:
    async with http_client() as http:
        return Admins(await signup(env, http), await signup(env, http))


async def _delete_key(env: AuthEnv, admin: Account, key_id: str) -> tuple[int, object]:
    async with (
        http_client() as http,
        http.delete(
            f"{env.url}{ADMIN_PREFIX}/keys/{key_id}", headers=env.same_origin(admin.session)
        ) as resp,
    ):
        raw = await resp.read()
    return resp.status, json.loads(raw) if raw else None


# --- API keys --------------------------------------------------------------------------------


async def test_create_service_account_and_key(env: AuthEnv, admins: Admins) -> None:
    async with http_client() as http:
        account = await create_service_account(env, http, admins.a, roles=["viewer"], name="ci")
        assert account["name"] == "ci"
        assert account["roles"] == ["viewer"]
        assert isinstance(account["id"], str) and account["id"]
        created = await create_api_key(env, http, admins.a, account["id"])
    key = created["key"]
    assert key.startswith("gw_")
    assert isinstance(created["id"], str) and created["id"]
    assert created["id"] in key  # gw_<key id>_<secret>
    assert len(key) > len(created["id"]) + 40


async def test_api_key_authenticates_a_proxied_request(env: AuthEnv, admins: Admins) -> None:
    async with http_client() as http:
        account = await create_service_account(env, http, admins.a, roles=["viewer"])
        key = (await create_api_key(env, http, admins.a, account["id"]))["key"]
        status, body, _ = await echo(env, http, "/echo/api", headers=bearer(key))
        assert status == 200, body
        seen = upstream_headers(body)
        assert seen["x-auth-method"] == "api_key"
        assert seen["x-user-id"] == account["id"]
        assert seen["x-tenant-id"] == admins.a.tenant_id
        assert seen["x-tenant-slug"] == admins.a.tenant_slug
        assert seen["x-user-roles"] == "viewer"
        names = {name.lower() for name, _ in upstream_header_list(body)}
        assert "x-user-email" not in names
        assert "authorization" not in names
        assert key not in json.dumps(body)
        # Its own tenant named explicitly is fine; the scheme is case-insensitive.
        status, body, _ = await echo(
            env,
            http,
            "/echo/api",
            headers={"Authorization": f"bearer {key}", "X-Tenant": admins.a.tenant_slug},
        )
        assert status == 200, body


async def test_service_account_roles_are_sorted_upstream(env: AuthEnv, admins: Admins) -> None:
    async with http_client() as http:
        account = await create_service_account(env, http, admins.a, roles=["viewer", "editor"])
        key = (await create_api_key(env, http, admins.a, account["id"]))["key"]
        status, body, _ = await echo(env, http, "/echo/roles", headers=bearer(key))
    assert status == 200, body
    assert upstream_headers(body)["x-user-roles"] == "editor,viewer"


async def test_listing_never_shows_the_secret(env: AuthEnv, admins: Admins) -> None:
    async with http_client() as http:
        account = await create_service_account(env, http, admins.a)
        created = await create_api_key(env, http, admins.a, account["id"])
        secret = created["key"].rsplit("_", 1)[1]
        url = f"{env.url}{ADMIN_PREFIX}/tenants/{admins.a.tenant_slug}/service-accounts"
        async with http.get(url, headers=env.cookie(admins.a.session)) as resp:
            assert resp.status == 200
            text = await resp.text()
        listed = json.loads(text)["service_accounts"]
        assert account["id"] in {a["id"] for a in listed}
        assert secret not in text
        # A key listing is not part of the contract; if there is one, it must not leak either.
        keys_url = f"{env.url}{ADMIN_PREFIX}/service-accounts/{account['id']}/keys"
        async with http.get(keys_url, headers=env.cookie(admins.a.session)) as resp:
            text = await resp.text()
            if resp.status == 200:
                assert created["id"] in text
            assert secret not in text
    # And neither do the store files.
    for path in env.state_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


async def test_revoked_key_is_refused_at_once(env: AuthEnv, admins: Admins) -> None:
    async with http_client() as http:
        account = await create_service_account(env, http, admins.a)
        created = await create_api_key(env, http, admins.a, account["id"])
        key = created["key"]
        assert (await echo(env, http, "/echo/k", headers=bearer(key)))[0] == 200
        status, body = await _delete_key(env, admins.a, created["id"])
        assert status == 204, body
        status, body, _ = await echo(env, http, "/echo/k", headers=bearer(key))
        assert status == 401, body
        assert_error(body)
        # Revoking again is not an error that reveals anything new.
        status, _ = await _delete_key(env, admins.a, created["id"])
        assert status in (204, 404)


async def test_key_with_past_expiry_is_refused_at_creation(env: AuthEnv, admins: Admins) -> None:
    async with http_client() as http:
        account = await create_service_account(env, http, admins.a)
        for expires_at in (time.time() - 60, 0, "tomorrow"):
            status, body = await admin_post(
                env,
                http,
                f"/service-accounts/{account['id']}/keys",
                {"expires_at": expires_at},
                env.same_origin(admins.a.session),
            )
            assert status == 422, (expires_at, body)
            assert_error(body)


async def test_key_with_future_expiry_works(env: AuthEnv, admins: Admins) -> None:
    # Expiry itself is not exercised end to end: it would need waiting for the clock.
    expires_at = time.time() + 3600
    async with http_client() as http:
        account = await create_service_account(env, http, admins.a)
        created = await create_api_key(
            env, http, admins.a, account["id"], {"expires_at": expires_at}
        )
        assert created["expires_at"] == pytest.approx(expires_at, abs=1)
        status, body, _ = await echo(env, http, "/echo/k", headers=bearer(created["key"]))
    assert status == 200, body


async def test_other_tenant_admin_cannot_touch_the_key(env: AuthEnv, admins: Admins) -> None:
    async with http_client() as http:
        account = await create_service_account(env, http, admins.a)
        created = await create_api_key(env, http, admins.a, account["id"])
        status, body = await _delete_key(env, admins.b, created["id"])
        assert status == 404, body
        assert_error(body)
        status, body = await admin_post(
            env,
            http,
            f"/service-accounts/{account['id']}/keys",
            {},
            env.same_origin(admins.b.session),
        )
        assert status == 404, body
        assert_error(body)
        # Nor list or create service accounts in tenant A.
        status, body = await admin_post(
            env,
            http,
            f"/tenants/{admins.a.tenant_slug}/service-accounts",
            {"name": "intruder", "roles": ["admin"]},
            env.same_origin(admins.b.session),
        )
        assert status == 404, body
        # The key still works.
        status, body, _ = await echo(env, http, "/echo/k", headers=bearer(created["key"]))
        assert status == 200, body


async def test_key_naming_another_tenant_is_403(env: AuthEnv, admins: Admins) -> None:
    async with http_client() as http:
        account = await create_service_account(env, http, admins.a)
        key = (await create_api_key(env, http, admins.a, account["id"]))["key"]
        before = len(env.upstream.requests)
        status, body, _ = await echo(
            env, http, "/echo/k", headers={**bearer(key), "X-Tenant": admins.b.tenant_slug}
        )
    assert status == 403, body
    assert_error(body)
    assert len(env.upstream.requests) == before


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer gw_x",
        "Bearer gw_",
        "Bearer gw_key_AAAAAAAAAAAAAAAAAAAAAA_" + "B" * 43,
        "Bearer gw_key_AAAAAAAAAAAAAAAAAAAAAA_" + "B" * 43 + "x",
    ],
    ids=["short", "prefix-only", "well-formed-unknown", "too-long"],
)
async def test_garbage_key_is_401(env: AuthEnv, authorization: str) -> None:
    async with http_client() as http:
        status, body, _ = await echo(env, http, "/echo/k", headers={"Authorization": authorization})
    assert status == 401, body
    assert_error(body)


async def test_garbage_key_does_not_fall_back_to_the_cookie(env: AuthEnv, admins: Admins) -> None:
    headers = {**env.cookie(admins.a.session), "Authorization": "Bearer gw_x"}
    async with http_client() as http:
        status, body, _ = await echo(env, http, "/echo/k", headers=headers)
    assert status == 401, body


async def test_tampered_secret_is_401(env: AuthEnv, admins: Admins) -> None:
    async with http_client() as http:
        account = await create_service_account(env, http, admins.a)
        key = (await create_api_key(env, http, admins.a, account["id"]))["key"]
        last = "A" if key[-1] != "A" else "B"
        status, body, _ = await echo(env, http, "/echo/k", headers=bearer(key[:-1] + last))
    assert status == 401, body


async def test_api_key_cannot_reach_the_session_endpoint(env: AuthEnv, admins: Admins) -> None:
    async with http_client() as http:
        account = await create_service_account(env, http, admins.a)
        key = (await create_api_key(env, http, admins.a, account["id"]))["key"]
        async with http.get(f"{env.url}/.gateway/auth/session", headers=bearer(key)) as resp:
            assert resp.status == 401


# --- invitations -----------------------------------------------------------------------------


async def _invite(
    env: AuthEnv, admin: Account, email: str, role: str = "viewer", tenant: str | None = None
) -> tuple[int, dict[str, object]]:
    async with http_client() as http:
        return await admin_post(
            env,
            http,
            f"/tenants/{tenant or admin.tenant_slug}/invitations",
            {"email": email, "role": role},
            env.same_origin(admin.session),
        )


async def _signup_invited(
    env: AuthEnv, email: str, invitation: str
) -> tuple[int, dict[str, object], str | None]:
    async with http_client() as http:
        status, body, resp = await post_json(
            http,
            f"{env.url}/.gateway/auth/signup",
            {"email": email, "password": PASSWORD, "invitation": invitation},
        )
    return status, body, set_cookie_value(resp, env.cookie_name)


async def test_invitation_signup_joins_with_the_invited_role(env: AuthEnv, admins: Admins) -> None:
    email = new_email()
    before = time.time()
    status, body = await _invite(env, admins.a, email)
    assert status == 201, body
    assert {"invitation", "expires_at"} <= set(body)
    token = body["invitation"]
    assert isinstance(token, str) and len(token) >= 32
    expires_at = body["expires_at"]
    assert isinstance(expires_at, int | float) and expires_at > before
    status, joined, cookie = await _signup_invited(env, email, token)
    assert status == 201, joined
    assert joined["tenant"] == {"id": admins.a.tenant_id, "slug": admins.a.tenant_slug}
    assert joined["roles"] == ["viewer"]
    assert joined["user"]["email"] == email
    assert cookie
    async with http_client() as http:
        status, raw, _ = await signin(env, http, email, PASSWORD)
        assert status == 200, raw
        assert json.loads(raw)["roles"] == ["viewer"]
        status, seen, _ = await echo(env, http, "/echo/viewer", headers=env.cookie(cookie))
    assert status == 200, seen
    assert upstream_headers(seen)["x-user-roles"] == "viewer"
    assert upstream_headers(seen)["x-tenant-id"] == admins.a.tenant_id


async def test_invitation_cannot_be_reused(env: AuthEnv, admins: Admins) -> None:
    email = new_email()
    status, body = await _invite(env, admins.a, email)
    assert status == 201, body
    token = str(body["invitation"])
    assert (await _signup_invited(env, email, token))[0] == 201
    for again in (email, new_email()):
        status, refused, cookie = await _signup_invited(env, again, token)
        assert 400 <= status < 500, refused
        assert_error(refused)
        assert cookie is None


async def test_invitation_for_another_email_is_refused(env: AuthEnv, admins: Admins) -> None:
    invited = new_email()
    status, body = await _invite(env, admins.a, invited)
    assert status == 201, body
    token = str(body["invitation"])
    status, refused, cookie = await _signup_invited(env, new_email(), token)
    assert 400 <= status < 500, refused
    assert_error(refused)
    assert cookie is None
    # The invitation is still good for the invited address.
    status, joined, _ = await _signup_invited(env, invited.upper(), token)
    assert status == 201, joined
    assert joined["roles"] == ["viewer"]


@pytest.mark.parametrize(
    "token", ["", "x", "A" * 43, "not a token at all!"], ids=["empty", "short", "unknown", "junk"]
)
async def test_unknown_invitation_is_refused(env: AuthEnv, token: str) -> None:
    status, body, cookie = await _signup_invited(env, new_email(), token)
    assert 400 <= status < 500, body
    assert_error(body)
    assert cookie is None


async def test_viewer_cannot_create_invitations(env: AuthEnv, admins: Admins) -> None:
    email = new_email()
    status, body = await _invite(env, admins.a, email)
    assert status == 201, body
    status, joined, cookie = await _signup_invited(env, email, str(body["invitation"]))
    assert status == 201 and cookie, joined
    viewer = Account(
        email=email,
        password=PASSWORD,
        user_id=joined["user"]["id"],
        tenant_id=admins.a.tenant_id,
        tenant_slug=admins.a.tenant_slug,
        roles=["viewer"],
        session=cookie,
    )
    status, body = await _invite(env, viewer, new_email())
    assert status == 403, body
    assert_error(body)
    # Nor manage service accounts.
    async with http_client() as http:
        status, body = await admin_post(
            env,
            http,
            f"/tenants/{admins.a.tenant_slug}/service-accounts",
            {"name": "viewer-made", "roles": ["admin"]},
            env.same_origin(viewer.session),
        )
    assert status == 403, body


async def test_other_tenant_admin_cannot_invite(env: AuthEnv, admins: Admins) -> None:
    for ref in (admins.a.tenant_slug, admins.a.tenant_id):
        status, body = await _invite(env, admins.b, new_email(), tenant=ref)
        assert status == 404, (ref, body)
        assert_error(body)


async def test_invitation_with_unknown_role_is_422(env: AuthEnv, admins: Admins) -> None:
    status, body = await _invite(env, admins.a, new_email(), role="superuser")
    assert status == 422, body
    assert_error(body)


async def test_unauthenticated_admin_api_is_401(env: AuthEnv, admins: Admins) -> None:
    async with http_client() as http:
        status, body = await admin_post(
            env,
            http,
            f"/tenants/{admins.a.tenant_slug}/invitations",
            {"email": new_email(), "role": "viewer"},
            {"Origin": env.origin},
        )
    assert status == 401, body
    assert_error(body)
