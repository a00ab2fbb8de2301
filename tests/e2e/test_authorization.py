"""Casbin authorization of proxied requests, end to end against the real `gateway serve`.

Covers the default role matrix (viewer, editor, admin, and an operator who is a viewer of the
tenant), a role change taking effect on the very next request with a rotated session token,
and the per-tenant settings that shape proxying: `features` (injected upstream and required
by a route), and `upstream` (the silo path).

The helpers at the top are plain functions, reused by the other authorization test modules.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import (
    ADMIN_PREFIX,
    INSECURE_COOKIE,
    PASSWORD,
    Account,
    AuthEnv,
    admin_post,
    assert_error,
    echo,
    http_client,
    new_email,
    set_cookie_value,
    signin,
    signup,
    unique,
    upstream_headers,
)
from tests.support.gateway_proc import base_config, run_cli, run_gateway
from tests.support.upstream import EchoUpstream, run_echo_upstream

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


# --------------------------------------------------------------------------------------------
# Shared helpers (also imported by test_policy_admin, test_path_tricks and test_policy_cli)
# --------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def gateway_env(
    workdir: Path, *, upstreams: list[dict[str, Any]] | None = None, **extra: Any
) -> AsyncIterator[AuthEnv]:
    """An echo upstream and a real gateway in front of it (built-in rate limits off).

    `upstreams` are extra routes appended after the default `app` route; `extra` replaces
    top-level configuration keys.
    """
    async with run_echo_upstream() as upstream:
        config = base_config(upstream.url, workdir, **extra)
        config.setdefault("rate_limits", {"defaults": False})
        config["upstreams"].extend(upstreams or [])
        async with run_gateway(workdir, config) as gw:
            yield AuthEnv(gw, upstream, INSECURE_COOKIE)


async def invite_member(
    env: AuthEnv, http: aiohttp.ClientSession, admin: Account, role: str
) -> Account:
    """A new user who joins the admin's tenant with `role` through an invitation."""
    email = new_email()
    status, body = await admin_post(
        env,
        http,
        f"/tenants/{admin.tenant_slug}/invitations",
        {"email": email, "role": role},
        env.same_origin(admin.session),
    )
    assert status == 201, body
    return await signup(env, http, email=email, invitation=body["invitation"])


async def cli_member(
    env: AuthEnv, tenant_slug: str, role: str, *, operator: bool = False
) -> tuple[str, str]:
    """(email, session) of a user created with the bootstrap CLI, optionally an operator."""
    email = new_email()
    config = str(env.gw.config_path)
    code, out, err = await run_cli(
        "users",
        "create",
        email,
        "--tenant",
        tenant_slug,
        "--role",
        role,
        "--password-stdin",
        "--config",
        config,
        cwd=env.gw.workdir,
        stdin=f"{PASSWORD}\n".encode(),
    )
    assert code == 0, (out, err)
    if operator:
        code, out, err = await run_cli(
            "operators", "grant", email, "--config", config, cwd=env.gw.workdir
        )
        assert code == 0, (out, err)
    async with http_client() as http:
        status, raw, resp = await signin(env, http, email, PASSWORD)
        assert status == 200, raw
        session = set_cookie_value(resp, env.cookie_name)
    assert session
    return email, session


async def call(
    env: AuthEnv,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    session: str,
    *,
    tenant: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """A proxied request with the session cookie and a same-origin `Origin`."""
    sent = {**env.same_origin(session), **(headers or {})}
    if tenant is not None:
        sent["X-Tenant"] = tenant
    return await echo(env, http, path, method=method, headers=sent)


async def admin_call(
    env: AuthEnv,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    session: str,
    body: Any = None,
) -> tuple[int, Any]:
    """A request to the admin API (cookie + same origin, JSON body when given)."""
    headers = env.same_origin(session)
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body)
    async with http.request(
        method, f"{env.url}{ADMIN_PREFIX}{path}", headers=headers, data=data
    ) as resp:
        raw = await resp.read()
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return resp.status, parsed


def assert_proxied(status: int, body: Any, method: str, path: str) -> None:
    """A 200 from the echo upstream, which received exactly `method path`."""
    assert status == 200, body
    assert isinstance(body, dict) and "headers" in body, body
    assert body["method"] == method, body
    assert body["path"] == path, body


def assert_denied(status: int, body: Any, code: str = "policy-deny") -> None:
    """The gateway's own 403 JSON refusal with `code` (never an upstream answer)."""
    assert status == 403, body
    assert_error(body, code)


# --------------------------------------------------------------------------------------------
# Fixtures of this module
# --------------------------------------------------------------------------------------------


@dataclass
class World:
    env: AuthEnv
    silo: EchoUpstream
    admin: Account  # tenant A
    editor: Account
    viewer: Account
    operator: str  # session of an operator who is a viewer of A
    other: Account  # admin of tenant B (no features)
    operator_email: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    workdir = tmp_path_factory.mktemp("authz")
    async with run_echo_upstream() as shared, run_echo_upstream() as silo_upstream:
        config = base_config(shared.url, workdir, tenancy={"header": True})
        config["rate_limits"] = {"defaults": False}
        config["upstreams"] += [
            # Only tenants with the `beta` feature may use /beta (the same echo app behind it).
            {
                "name": "beta",
                "url": shared.url,
                "match": {"path_prefix": "/beta"},
                "require_features": ["beta"],
            },
            # Reached only by tenants whose `upstream` setting names it.
            {"name": "silo", "url": silo_upstream.url, "match": {"host": "silo.invalid"}},
        ]
        async with run_gateway(workdir, config) as gw:
            env = AuthEnv(gw, shared, INSECURE_COOKIE)
            async with http_client() as http:
                admin = await signup(env, http, tenant=unique("ta"))
                editor = await invite_member(env, http, admin, "editor")
                viewer = await invite_member(env, http, admin, "viewer")
                other = await signup(env, http, tenant=unique("tb"))
            op_email, op_session = await cli_member(env, admin.tenant_slug, "viewer", operator=True)
            yield World(env, silo_upstream, admin, editor, viewer, op_session, other, op_email)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_client() as client:
        yield client


# --------------------------------------------------------------------------------------------
# 1. The role matrix
# --------------------------------------------------------------------------------------------

MATRIX_PATHS = ("/x", "/admin/x", "/admin", "/administrator")
MATRIX_METHODS = ("GET", "POST", "PUT", "DELETE")
MATRIX_ROLES = ("viewer", "editor", "admin", "operator")


def _allowed(role: str, method: str, path: str) -> bool:
    if role in ("viewer", "operator"):
        # The operator is a viewer of the tenant: `operator` adds only the admin API.
        return method in ("GET", "HEAD", "OPTIONS")
    if role == "editor":
        under_admin = path == "/admin" or path.startswith("/admin/")
        return not (under_admin and method in WRITE_METHODS)
    return role == "admin"


def _session(world: World, role: str) -> str:
    if role == "operator":
        return world.operator
    account: Account = getattr(world, role)
    return account.session


@pytest.mark.parametrize("path", MATRIX_PATHS)
@pytest.mark.parametrize("method", MATRIX_METHODS)
@pytest.mark.parametrize("role", MATRIX_ROLES)
async def test_role_matrix(
    world: World, http: aiohttp.ClientSession, role: str, method: str, path: str
) -> None:
    before = len(world.env.upstream.requests)
    status, body, _ = await call(world.env, http, method, path, _session(world, role))
    if _allowed(role, method, path):
        assert_proxied(status, body, method, path)
        assert upstream_headers(body)["x-user-roles"] == ("viewer" if role == "operator" else role)
        assert len(world.env.upstream.requests) == before + 1
    else:
        assert_denied(status, body)
        assert len(world.env.upstream.requests) == before, "a denied request reached the upstream"


@pytest.mark.parametrize("role", ["viewer", "editor", "admin"])
async def test_head_and_options_are_reads(
    world: World, http: aiohttp.ClientSession, role: str
) -> None:
    for method in ("HEAD", "OPTIONS"):
        status, body, _ = await call(world.env, http, method, "/admin/x", _session(world, role))
        assert status == 200, (method, body)


@pytest.mark.parametrize("role", ["viewer", "editor"])
async def test_patch_under_admin_denied(
    world: World, http: aiohttp.ClientSession, role: str
) -> None:
    status, body, _ = await call(world.env, http, "PATCH", "/admin/x", _session(world, role))
    assert_denied(status, body)


async def test_html_accept_on_denied_request_is_not_proxied(
    world: World, http: aiohttp.ClientSession
) -> None:
    before = len(world.env.upstream.requests)
    html = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}
    status, body, resp = await call(
        world.env, http, "POST", "/admin/x", world.editor.session, headers=html
    )
    assert status == 403, body
    assert "Location" not in resp.headers, "a signed-in user's 403 is not a login redirect"
    assert len(world.env.upstream.requests) == before
    # A browser navigation the operator may not make (a tenant it is not a member of).
    status, body, resp = await call(
        world.env, http, "GET", "/x", world.operator, tenant=world.other.tenant_slug, headers=html
    )
    assert status == 403, body
    assert "Location" not in resp.headers
    assert len(world.env.upstream.requests) == before


async def test_operator_gets_nothing_proxied_in_a_tenant_it_is_not_member_of(
    world: World, http: aiohttp.ClientSession
) -> None:
    before = len(world.env.upstream.requests)
    for method in MATRIX_METHODS:
        status, body, _ = await call(
            world.env, http, method, "/x", world.operator, tenant=world.other.tenant_slug
        )
        assert_denied(status, body, "not-a-member")
    assert len(world.env.upstream.requests) == before


async def test_method_override_header_does_not_turn_a_write_into_a_read(
    world: World, http: aiohttp.ClientSession
) -> None:
    override = {
        "X-HTTP-Method-Override": "GET",
        "X-HTTP-Method": "GET",
        "X-Method-Override": "GET",
    }
    status, body, _ = await call(
        world.env, http, "POST", "/admin/x", world.editor.session, headers=override
    )
    assert_denied(status, body)
    status, body, _ = await call(world.env, http, "POST", "/x", world.viewer.session)
    assert_denied(status, body)
    # A write that is allowed reaches the upstream without any override header.
    status, body, _ = await call(
        world.env, http, "POST", "/x", world.editor.session, headers=override
    )
    assert_proxied(status, body, "POST", "/x")
    assert not {"x-http-method-override", "x-http-method", "x-method-override"} & set(
        upstream_headers(body)
    )


# --------------------------------------------------------------------------------------------
# 4. A live role change
# --------------------------------------------------------------------------------------------


async def test_role_change_applies_to_the_next_request_and_rotates_the_token(
    world: World, http: aiohttp.ClientSession
) -> None:
    env = world.env
    member = await invite_member(env, http, world.admin, "viewer")
    status, body, _ = await call(env, http, "POST", "/x", member.session)
    assert_denied(status, body)

    status, body = await admin_call(
        env,
        http,
        "PUT",
        f"/tenants/{world.admin.tenant_slug}/members/{member.user_id}",
        world.admin.session,
        {"roles": ["editor"]},
    )
    assert status == 200, body
    assert body["roles"] == ["editor"], body

    status, body, resp = await call(env, http, "POST", "/x", member.session)
    assert_proxied(status, body, "POST", "/x")
    assert upstream_headers(body)["x-user-roles"] == "editor"
    new_token = set_cookie_value(resp, env.cookie_name)
    assert new_token, "the request after a role change must carry a rotated session cookie"
    assert new_token != member.session

    # The token seen before the change is dead; the rotated one carries the new role.
    status, body, _ = await call(env, http, "GET", "/x", member.session)
    assert status == 401, body
    assert_error(body, "unauthenticated")
    status, body, _ = await call(env, http, "PUT", "/x", new_token)
    assert_proxied(status, body, "PUT", "/x")
    status, body, _ = await call(env, http, "POST", "/admin/x", new_token)
    assert_denied(status, body)


async def test_role_downgrade_applies_at_once(world: World, http: aiohttp.ClientSession) -> None:
    env = world.env
    member = await invite_member(env, http, world.admin, "editor")
    status, body, _ = await call(env, http, "DELETE", "/x", member.session)
    assert_proxied(status, body, "DELETE", "/x")
    status, body = await admin_call(
        env,
        http,
        "PUT",
        f"/tenants/{world.admin.tenant_slug}/members/{member.user_id}",
        world.admin.session,
        {"roles": ["viewer"]},
    )
    assert status == 200, body
    before = len(env.upstream.requests)
    status, body, resp = await call(env, http, "DELETE", "/x", member.session)
    assert_denied(status, body)
    assert len(env.upstream.requests) == before
    rotated = set_cookie_value(resp, env.cookie_name)
    token = rotated or member.session
    status, body, _ = await call(env, http, "GET", "/x", token)
    assert_proxied(status, body, "GET", "/x")
    assert upstream_headers(body)["x-user-roles"] == "viewer"


# --------------------------------------------------------------------------------------------
# 5. Tenant settings: features and the silo upstream
# --------------------------------------------------------------------------------------------


async def test_features_are_injected_and_gate_a_route(
    world: World, http: aiohttp.ClientSession
) -> None:
    env = world.env
    tenant = await signup(env, http, tenant=unique("tf"))
    status, body = await admin_call(
        env,
        http,
        "PATCH",
        f"/tenants/{tenant.tenant_slug}",
        world.operator,
        {"features": ["reports", "beta"]},
    )
    assert status == 200, body
    assert body["features"] == ["beta", "reports"], body

    status, body, _ = await call(env, http, "GET", "/x", tenant.session)
    assert_proxied(status, body, "GET", "/x")
    assert upstream_headers(body)["x-tenant-features"] == "beta,reports"

    status, body, _ = await call(env, http, "GET", "/beta/x", tenant.session)
    assert_proxied(status, body, "GET", "/beta/x")

    before = len(env.upstream.requests)
    status, body, _ = await call(env, http, "GET", "/beta/x", world.other.session)
    assert_denied(status, body, "feature-disabled")
    status, body, _ = await call(env, http, "GET", "/beta", world.other.session)
    assert_denied(status, body, "feature-disabled")
    assert len(env.upstream.requests) == before
    # /betamax is not under the /beta route.
    status, body, _ = await call(env, http, "GET", "/betamax", world.other.session)
    assert_proxied(status, body, "GET", "/betamax")

    # Removing the feature closes the route again.
    status, body = await admin_call(
        env, http, "PATCH", f"/tenants/{tenant.tenant_slug}", world.operator, {"features": []}
    )
    assert status == 200, body
    status, body, _ = await call(env, http, "GET", "/beta/x", tenant.session)
    assert_denied(status, body, "feature-disabled")
    status, body, _ = await call(env, http, "GET", "/x", tenant.session)
    assert_proxied(status, body, "GET", "/x")
    assert upstream_headers(body).get("x-tenant-features", "") == ""


async def test_silo_upstream_setting_sends_only_that_tenant_to_the_silo(
    world: World, http: aiohttp.ClientSession
) -> None:
    env = world.env
    tenant = await signup(env, http, tenant=unique("ts"))
    status, body = await admin_call(
        env, http, "PATCH", f"/tenants/{tenant.tenant_slug}", world.operator, {"upstream": "silo"}
    )
    assert status == 200, body
    assert body["upstream"] == "silo", body

    silo_before, shared_before = len(world.silo.requests), len(env.upstream.requests)
    status, body, _ = await call(env, http, "POST", "/orders/1", tenant.session)
    assert_proxied(status, body, "POST", "/orders/1")
    assert len(world.silo.requests) == silo_before + 1
    assert len(env.upstream.requests) == shared_before
    assert upstream_headers(body)["x-tenant-slug"] == tenant.tenant_slug

    status, body, _ = await call(env, http, "POST", "/orders/1", world.other.session)
    assert_proxied(status, body, "POST", "/orders/1")
    assert len(world.silo.requests) == silo_before + 1
    assert len(env.upstream.requests) == shared_before + 1

    # The silo tenant is still authorized by the policy: a denied write reaches nobody.
    viewer = await invite_member(env, http, tenant, "viewer")
    status, body, _ = await call(env, http, "POST", "/orders/1", viewer.session)
    assert_denied(status, body)
    assert len(world.silo.requests) == silo_before + 1

    # Back to the shared upstream.
    status, body = await admin_call(
        env, http, "PATCH", f"/tenants/{tenant.tenant_slug}", world.operator, {"upstream": None}
    )
    assert status == 200, body
    status, body, _ = await call(env, http, "GET", "/orders/1", tenant.session)
    assert_proxied(status, body, "GET", "/orders/1")
    assert len(world.silo.requests) == silo_before + 1
    assert len(env.upstream.requests) == shared_before + 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("features", "beta"),
        ("features", ["Beta Flag"]),
        ("features", ["a,b"]),
        ("plan", "no-such-plan"),
        ("upstream", "no-such-upstream"),
        ("upstream", 7),
        ("require_mfa", ["superuser"]),
        ("require_mfa", "admin"),
        ("colour", "blue"),
    ],
)
async def test_invalid_settings_are_422_naming_the_field(
    world: World, http: aiohttp.ClientSession, field: str, value: Any
) -> None:
    env, slug = world.env, world.other.tenant_slug
    status, body = await admin_call(env, http, "GET", f"/tenants/{slug}", world.operator)
    assert status == 200, body
    before = body
    status, body = await admin_call(
        env, http, "PATCH", f"/tenants/{slug}", world.operator, {field: value}
    )
    assert status == 422, body
    assert_error(body)
    assert field in body["error"]["message"] or field in body["error"].get("field", ""), body
    status, body = await admin_call(env, http, "GET", f"/tenants/{slug}", world.operator)
    assert status == 200 and body == before, "a refused PATCH must change nothing"
