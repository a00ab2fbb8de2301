"""CSRF protection of cookie-authenticated, state-changing requests, end to end.

A mutation riding on the session cookie must carry an `Origin` (or `Referer`) of the
gateway's own origin, or a valid `X-CSRF-Token`; otherwise 403 and the upstream never sees it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from multidict import CIMultiDict

from tests.e2e.auth_helpers import (
    Account,
    AuthEnv,
    assert_error,
    auth_env,
    bearer,
    create_api_key,
    create_service_account,
    csrf_token,
    echo,
    http_client,
    signup,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

MUTATIONS = ["POST", "PUT", "DELETE", "PATCH"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AuthEnv]:
    async with auth_env(tmp_path_factory.mktemp("csrf")) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def user(env: AuthEnv) -> Account:
    async with http_client() as http:
        return await signup(env, http)


async def _refused(env: AuthEnv, method: str, headers: dict[str, str]) -> None:
    """The request is 403 `csrf` and the upstream is not called."""
    before = len(env.upstream.requests)
    async with http_client() as http:
        status, body, _ = await echo(env, http, "/echo/change", method=method, headers=headers)
    assert status == 403, (method, headers, body)
    assert_error(body, "csrf")
    assert len(env.upstream.requests) == before, "a refused request reached the upstream"


async def _passes(env: AuthEnv, method: str, headers: dict[str, str]) -> None:
    async with http_client() as http:
        status, body, _ = await echo(
            env, http, "/echo/change", method=method, headers=headers, data=b"x=1"
        )
    assert status == 200, (method, headers, body)
    assert body["method"] == method


@pytest.mark.parametrize("method", MUTATIONS)
async def test_no_origin_and_no_referer_is_refused(
    env: AuthEnv, user: Account, method: str
) -> None:
    await _refused(env, method, env.cookie(user.session))


@pytest.mark.parametrize("method", MUTATIONS)
@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "null",
        "NULL",
        "http://127.0.0.1",  # other port
        "https://127.0.0.1:{port}",  # other scheme
        "http://127.0.0.1:{port}.evil.example",
        "http://evil.example@127.0.0.1:{port}",
        "http://127.0.0.1:{port}/",  # an Origin never has a path
        "",
    ],
)
async def test_foreign_or_opaque_origin_is_refused(
    env: AuthEnv, user: Account, method: str, origin: str
) -> None:
    headers = {**env.cookie(user.session), "Origin": origin.format(port=env.gw.port)}
    await _refused(env, method, headers)


async def test_repeated_origin_headers_are_refused(env: AuthEnv, user: Account) -> None:
    raw_headers = [
        ("Cookie", f"{env.cookie_name}={user.session}"),
        ("Origin", env.origin),
        ("Origin", "https://evil.example"),
    ]
    before = len(env.upstream.requests)
    async with (
        http_client() as http,
        http.post(f"{env.url}/echo/change", headers=CIMultiDict(raw_headers)) as resp,
    ):
        assert resp.status == 403
    assert len(env.upstream.requests) == before


async def test_foreign_origin_is_not_rescued_by_an_own_referer(env: AuthEnv, user: Account) -> None:
    headers = {
        **env.cookie(user.session),
        "Origin": "https://evil.example",
        "Referer": f"{env.origin}/page",
    }
    await _refused(env, "POST", headers)


@pytest.mark.parametrize(
    "referer",
    [
        "https://evil.example/page",
        "http://127.0.0.1.evil.example/",
        "http://127.0.0.1:1/page",
        "null",
        "/relative",
    ],
)
async def test_foreign_referer_without_origin_is_refused(
    env: AuthEnv, user: Account, referer: str
) -> None:
    await _refused(env, "POST", {**env.cookie(user.session), "Referer": referer})


@pytest.mark.parametrize("method", MUTATIONS)
async def test_same_origin_passes(env: AuthEnv, user: Account, method: str) -> None:
    await _passes(env, method, env.same_origin(user.session))


@pytest.mark.parametrize("method", MUTATIONS)
async def test_own_referer_without_origin_passes(env: AuthEnv, user: Account, method: str) -> None:
    headers = {**env.cookie(user.session), "Referer": f"{env.origin}/some/page?x=1"}
    await _passes(env, method, headers)


@pytest.mark.parametrize("method", MUTATIONS)
async def test_valid_csrf_token_without_origin_passes(
    env: AuthEnv, user: Account, method: str
) -> None:
    async with http_client() as http:
        token = await csrf_token(env, http, user.session)
    await _passes(env, method, {**env.cookie(user.session), "X-CSRF-Token": token})


async def test_wrong_csrf_token_is_refused(env: AuthEnv, user: Account) -> None:
    async with http_client() as http:
        token = await csrf_token(env, http, user.session)
        other = await signup(env, http)
        other_token = await csrf_token(env, http, other.session)
    assert other_token != token
    for bad in (
        "wrong",
        "",
        token[:-1],
        token + "x",
        token.upper() if token.upper() != token else token.lower(),
        other_token,
    ):
        await _refused(env, "POST", {**env.cookie(user.session), "X-CSRF-Token": bad})


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
async def test_safe_methods_never_need_proof(env: AuthEnv, user: Account, method: str) -> None:
    async with http_client() as http:
        status, _, _ = await echo(
            env, http, "/echo/read", method=method, headers=env.cookie(user.session)
        )
    assert status == 200


async def test_api_key_requests_need_no_proof(env: AuthEnv, user: Account) -> None:
    async with http_client() as http:
        # An editor may write (a viewer's POST would be a policy denial, not a CSRF question).
        account = await create_service_account(env, http, user, roles=["editor"])
        key = (await create_api_key(env, http, user, account["id"]))["key"]
        for method in MUTATIONS:
            status, body, _ = await echo(
                env, http, "/echo/change", method=method, headers=bearer(key)
            )
            assert status == 200, (method, body)
            status, body, _ = await echo(
                env,
                http,
                "/echo/change",
                method=method,
                headers={**bearer(key), "Origin": "https://evil.example"},
            )
            assert status == 200, (method, body)


async def test_admin_api_mutation_needs_proof(env: AuthEnv, user: Account) -> None:
    async with http_client() as http:
        for headers in (
            env.cookie(user.session),
            {**env.cookie(user.session), "Origin": "https://evil.example"},
            {**env.cookie(user.session), "Origin": "null"},
        ):
            async with http.post(
                f"{env.url}/.gateway/admin/v1/tenants/{user.tenant_slug}/service-accounts",
                json={"name": "csrf-probe", "roles": ["viewer"]},
                headers=headers,
            ) as resp:
                assert resp.status == 403, headers
                assert_error(await resp.json(), "csrf")
        token = await csrf_token(env, http, user.session)
        async with http.post(
            f"{env.url}/.gateway/admin/v1/tenants/{user.tenant_slug}/service-accounts",
            json={"name": "csrf-probe", "roles": ["viewer"]},
            headers={**env.cookie(user.session), "X-CSRF-Token": token},
        ) as resp:
            assert resp.status == 201, await resp.text()


async def test_signout_needs_proof(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        async with http.post(
            f"{env.url}/.gateway/auth/signout", headers=env.cookie(account.session)
        ) as resp:
            assert resp.status == 403
        token = await csrf_token(env, http, account.session)
        async with http.post(
            f"{env.url}/.gateway/auth/signout",
            headers={**env.cookie(account.session), "X-CSRF-Token": token},
        ) as resp:
            assert resp.status == 204
        async with http.get(
            f"{env.url}/.gateway/auth/session", headers=env.cookie(account.session)
        ) as resp:
            assert resp.status == 401
