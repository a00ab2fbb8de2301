"""Tenant resolution and the identity headers the upstream receives, end to end.

The gateway runs with every tenant source on: subdomain of `example.test`, the `X-Tenant`
header and the `/t/{slug}/` path prefix.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import (
    Account,
    AuthEnv,
    assert_error,
    auth_env,
    echo,
    http_client,
    signup,
    unique,
    upstream_header_list,
    upstream_headers,
)
from tests.support.net import parse_response, raw_request

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

DOMAIN = "example.test"
IDENTITY_HEADERS = (
    "x-tenant-id",
    "x-tenant-slug",
    "x-user-id",
    "x-user-email",
    "x-user-roles",
    "x-auth-method",
    "x-tenant-features",
)


@dataclass
class Tenants:
    a: Account
    b: Account


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AuthEnv]:
    tenancy = {"subdomain_of": DOMAIN, "header": True, "path_prefix": True}
    async with auth_env(tmp_path_factory.mktemp("tenancy"), tenancy=tenancy) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tenants(env: AuthEnv) -> Tenants:
    async with http_client() as http:
        a = await signup(env, http, tenant=unique("ta"))
        b = await signup(env, http, tenant=unique("tb"))
    return Tenants(a, b)


def _assert_no_selector(body: dict[str, Any]) -> None:
    names = [name.lower().replace("_", "-").replace(".", "-") for name, _ in body["headers"]]
    assert "x-tenant" not in names, body["headers"]


def _assert_identity(body: dict[str, Any], account: Account) -> None:
    seen = upstream_headers(body)
    assert seen["x-tenant-id"] == account.tenant_id
    assert seen["x-tenant-slug"] == account.tenant_slug
    assert seen["x-user-id"] == account.user_id
    assert seen["x-user-email"] == account.email
    assert seen["x-user-roles"] == "admin"
    assert seen["x-auth-method"] == "session"
    _assert_no_selector(body)


# --- tenant resolution -----------------------------------------------------------------------


async def test_default_tenant_without_a_selector(env: AuthEnv, tenants: Tenants) -> None:
    async with http_client() as http:
        status, body, _ = await echo(env, http, "/echo/x", headers=env.cookie(tenants.a.session))
    assert status == 200, body
    _assert_identity(body, tenants.a)
    assert body["path"] == "/echo/x"


async def test_own_tenant_by_header(env: AuthEnv, tenants: Tenants) -> None:
    headers = {**env.cookie(tenants.a.session), "X-Tenant": tenants.a.tenant_slug}
    async with http_client() as http:
        status, body, _ = await echo(env, http, "/echo/x", headers=headers)
    assert status == 200, body
    _assert_identity(body, tenants.a)


async def test_own_tenant_by_subdomain(env: AuthEnv, tenants: Tenants) -> None:
    headers = {**env.cookie(tenants.a.session), "Host": f"{tenants.a.tenant_slug}.{DOMAIN}"}
    async with http_client() as http:
        status, body, _ = await echo(env, http, "/echo/x", headers=headers)
    assert status == 200, body
    _assert_identity(body, tenants.a)


async def test_own_tenant_by_path_prefix_is_stripped(env: AuthEnv, tenants: Tenants) -> None:
    path = f"/t/{tenants.a.tenant_slug}/echo/x?q=1"
    async with http_client() as http:
        status, body, _ = await echo(env, http, path, headers=env.cookie(tenants.a.session))
    assert status == 200, body
    _assert_identity(body, tenants.a)
    assert body["path"] == "/echo/x"
    assert body["query_string"] == "q=1"


async def test_all_sources_agreeing(env: AuthEnv, tenants: Tenants) -> None:
    slug = tenants.a.tenant_slug
    headers = {**env.cookie(tenants.a.session), "X-Tenant": slug, "Host": f"{slug}.{DOMAIN}"}
    async with http_client() as http:
        status, body, _ = await echo(env, http, f"/t/{slug}/y", headers=headers)
    assert status == 200, body
    _assert_identity(body, tenants.a)
    assert body["path"] == "/y"


@pytest.mark.parametrize("source", ["header", "subdomain", "path"])
async def test_other_tenant_is_403(env: AuthEnv, tenants: Tenants, source: str) -> None:
    other = tenants.b.tenant_slug
    headers = env.cookie(tenants.a.session)
    path = "/echo/x"
    if source == "header":
        headers["X-Tenant"] = other
    elif source == "subdomain":
        headers["Host"] = f"{other}.{DOMAIN}"
    else:
        path = f"/t/{other}/echo/x"
    before = len(env.upstream.requests)
    async with http_client() as http:
        status, body, _ = await echo(env, http, path, headers=headers)
    assert status == 403, body
    assert_error(body)
    assert len(env.upstream.requests) == before


@pytest.mark.parametrize(
    "combo",
    ["header+path", "subdomain+header", "subdomain+path", "header+header"],
)
async def test_conflicting_sources_are_400(env: AuthEnv, tenants: Tenants, combo: str) -> None:
    a, b = tenants.a.tenant_slug, tenants.b.tenant_slug
    headers: list[tuple[str, str]] = [("Cookie", f"{env.cookie_name}={tenants.a.session}")]
    path = "/echo/x"
    if combo == "header+path":
        headers.append(("X-Tenant", a))
        path = f"/t/{b}/echo/x"
    elif combo == "subdomain+header":
        headers += [("Host", f"{a}.{DOMAIN}"), ("X-Tenant", b)]
    elif combo == "subdomain+path":
        headers.append(("Host", f"{a}.{DOMAIN}"))
        path = f"/t/{b}/echo/x"
    else:
        headers += [("X-Tenant", a), ("X-Tenant", b)]
    host = next((v for k, v in headers if k == "Host"), f"127.0.0.1:{env.gw.port}")
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers if k != "Host")
    raw = await raw_request(
        env.gw.host,
        env.gw.port,
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{lines}Connection: close\r\n\r\n".encode(),
    )
    status, _, body = parse_response(raw)
    assert status == 400, body
    assert_error(json.loads(body))


@pytest.mark.parametrize("source", ["header", "subdomain", "path"])
async def test_unknown_tenant_is_404(env: AuthEnv, tenants: Tenants, source: str) -> None:
    missing = unique("nosuch")
    headers = env.cookie(tenants.a.session)
    path = "/echo/x"
    if source == "header":
        headers["X-Tenant"] = missing
    elif source == "subdomain":
        headers["Host"] = f"{missing}.{DOMAIN}"
    else:
        path = f"/t/{missing}/echo/x"
    async with http_client() as http:
        status, body, _ = await echo(env, http, path, headers=headers)
    assert status == 404, body
    assert_error(body)


async def test_tenant_selector_is_never_forwarded(env: AuthEnv, tenants: Tenants) -> None:
    slug = tenants.a.tenant_slug
    async with http_client() as http:
        for path, headers in (
            ("/public/x", {"X-Tenant": slug}),
            ("/public/x", {"x_tenant": slug}),
            ("/echo/x", {**env.cookie(tenants.a.session), "x-tenant": slug}),
        ):
            status, body, _ = await echo(env, http, path, headers=headers)
            assert status == 200, (path, body)
            _assert_no_selector(body)


# --- identity headers ------------------------------------------------------------------------


async def test_upstream_receives_the_identity_headers(env: AuthEnv, tenants: Tenants) -> None:
    async with http_client() as http:
        status, body, _ = await echo(env, http, "/echo/id", headers=env.cookie(tenants.a.session))
    assert status == 200, body
    _assert_identity(body, tenants.a)
    names = [name.lower() for name, _ in upstream_header_list(body)]
    for name in IDENTITY_HEADERS:
        assert names.count(name) == 1, (name, body["headers"])
    # The tenant has no feature flags: the header is there, and empty.
    assert upstream_headers(body)["x-tenant-features"] == ""


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


FORGED = [
    ("x-user-id", "forged-1"),
    ("X_User_Id", "forged-2"),
    ("X.User.Id", "forged-3"),
    ("X-USER-ID", "forged-4"),
    ("X-User-Id", "forged-5"),
    ("X-User-Id", "forged-6"),
    ("X-User-Email", "forged@evil.example"),
    ("x_user_email", "forged2@evil.example"),
    ("X-User-Roles", "operator,admin"),
    ("X.User.Roles", "operator"),
    ("X-Tenant-Id", "t_forged"),
    ("X_Tenant_Slug", "forged-tenant"),
    ("X-Auth-Method", "api_key"),
    ("x.auth.method", "jwt"),
    ("X-Tenant-Features", "everything"),
    ("X_TENANT_FEATURES", "everything"),
]


def _forged_request(path: str, port: int, extra: list[tuple[str, str]]) -> bytes:
    lines = "".join(f"{k}: {v}\r\n" for k, v in [*FORGED, *extra])
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{lines}Connection: close\r\n\r\n"
    ).encode()


def _assert_nothing_forged(body: dict[str, Any]) -> None:
    forged_values = {value for _, value in FORGED}
    for name, value in upstream_header_list(body):
        if _canonical(name) in IDENTITY_HEADERS:
            assert value not in forged_values, (name, value)
            assert "_" not in name and "." not in name, name


async def test_forged_identity_headers_never_reach_the_upstream(
    env: AuthEnv, tenants: Tenants
) -> None:
    cookie = ("Cookie", f"{env.cookie_name}={tenants.a.session}")
    raw = await raw_request(
        env.gw.host, env.gw.port, _forged_request("/echo/forged", env.gw.port, [cookie])
    )
    status, _, payload = parse_response(raw)
    assert status == 200, payload
    body = json.loads(payload)
    _assert_nothing_forged(body)
    _assert_identity(body, tenants.a)
    names = [_canonical(name) for name, _ in upstream_header_list(body)]
    for name in IDENTITY_HEADERS:
        assert names.count(name) == 1, (name, body["headers"])


async def test_connection_header_cannot_remove_identity_headers(
    env: AuthEnv, tenants: Tenants
) -> None:
    request = (
        f"GET /echo/conn HTTP/1.1\r\nHost: 127.0.0.1:{env.gw.port}\r\n"
        f"Cookie: {env.cookie_name}={tenants.a.session}\r\n"
        "Connection: keep-alive, X-User-Id, X-Tenant-Id, X-User-Roles\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    status, _, payload = parse_response(await raw_request(env.gw.host, env.gw.port, request))
    assert status == 200, payload
    _assert_identity(json.loads(payload), tenants.a)


async def test_public_paths_get_no_identity_headers(env: AuthEnv, tenants: Tenants) -> None:
    cookie = ("Cookie", f"{env.cookie_name}={tenants.a.session}")
    for extra in ([cookie], []):
        raw = await raw_request(
            env.gw.host, env.gw.port, _forged_request("/public/page", env.gw.port, extra)
        )
        status, _, payload = parse_response(raw)
        assert status == 200, payload
        body = json.loads(payload)
        names = {_canonical(name) for name, _ in upstream_header_list(body)}
        assert not names & set(IDENTITY_HEADERS), body["headers"]
        # The session cookie is not handed to a public upstream either.
        assert tenants.a.session not in json.dumps(body)


async def test_session_cookie_is_not_forwarded_but_other_cookies_are(
    env: AuthEnv, tenants: Tenants
) -> None:
    cookie = f"theme=dark; {env.cookie_name}={tenants.a.session}; lang=en"
    async with http_client() as http:
        status, body, _ = await echo(env, http, "/echo/c", headers={"Cookie": cookie})
    assert status == 200, body
    assert tenants.a.session not in json.dumps(body)
    forwarded = "; ".join(v for k, v in upstream_header_list(body) if k.lower() == "cookie")
    assert "theme=dark" in forwarded
    assert "lang=en" in forwarded
    assert env.cookie_name not in forwarded
    _assert_identity(body, tenants.a)


async def test_only_the_session_cookie_is_dropped_when_it_is_alone(
    env: AuthEnv, tenants: Tenants
) -> None:
    async with http_client() as http:
        status, body, _ = await echo(env, http, "/echo/c", headers=env.cookie(tenants.a.session))
    assert status == 200, body
    assert tenants.a.session not in json.dumps(body)


async def test_anonymous_requests_do_not_reveal_which_tenants_exist(
    env: AuthEnv, tenants: Tenants
) -> None:
    results = []
    async with http_client() as http:
        for slug in (tenants.b.tenant_slug, unique("nosuch")):
            for headers, path in (
                ({"X-Tenant": slug}, "/echo/x"),
                ({"Host": f"{slug}.{DOMAIN}"}, "/echo/x"),
                ({}, f"/t/{slug}/echo/x"),
            ):
                status, body, _ = await echo(env, http, path, headers=headers)
                results.append((status, json.dumps(body, sort_keys=True)))
    assert {status for status, _ in results} == {401}, results
    assert len({body for _, body in results}) == 1, results
