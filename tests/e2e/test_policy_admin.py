"""A tenant's own policy rules through the admin API, and tenant isolation of that API.

`GET/PUT /.gateway/admin/v1/tenants/{t}/policy` replaces a tenant's rule set; deny wins over
every allow, a rule may name one user, and the rules apply only inside their tenant. An
admin of one tenant sees another tenant's admin objects as missing (404); tenant settings
are for operators only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import Account, AuthEnv, assert_error, http_client, signup, unique
from tests.e2e.test_authorization import (
    admin_call,
    assert_denied,
    assert_proxied,
    call,
    cli_member,
    gateway_env,
    invite_member,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@dataclass
class Org:
    env: AuthEnv
    admin: Account  # tenant A
    editor: Account
    editor2: Account
    viewer: Account
    viewer2: Account
    other: Account  # admin of tenant B
    other_editor: Account  # editor of tenant B
    operator: str  # session of an operator (a viewer of tenant C)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def org(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Org]:
    async with gateway_env(tmp_path_factory.mktemp("policy-admin")) as env:
        async with http_client() as http:
            admin = await signup(env, http, tenant=unique("ta"))
            editor = await invite_member(env, http, admin, "editor")
            editor2 = await invite_member(env, http, admin, "editor")
            viewer = await invite_member(env, http, admin, "viewer")
            viewer2 = await invite_member(env, http, admin, "viewer")
            other = await signup(env, http, tenant=unique("tb"))
            other_editor = await invite_member(env, http, other, "editor")
            ops = await signup(env, http, tenant=unique("tc"))
        _, operator = await cli_member(env, ops.tenant_slug, "viewer", operator=True)
        yield Org(env, admin, editor, editor2, viewer, viewer2, other, other_editor, operator)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_client() as client:
        yield client


async def put_rules(
    org: Org, http: aiohttp.ClientSession, rules: list[dict[str, Any]], *, tenant: Account
) -> tuple[int, Any]:
    return await admin_call(
        org.env,
        http,
        "PUT",
        f"/tenants/{tenant.tenant_slug}/policy",
        tenant.session,
        {"rules": rules},
    )


# --------------------------------------------------------------------------------------------
# 2. Deny beats allow; a rule for one user
# --------------------------------------------------------------------------------------------


async def test_tenant_deny_rule_beats_the_default_allow(
    org: Org, http: aiohttp.ClientSession
) -> None:
    env = org.env
    status, body, _ = await call(env, http, "DELETE", "/reports/1", org.editor.session)
    assert_proxied(status, body, "DELETE", "/reports/1")

    deny = {"sub": "editor", "obj": "/reports/*", "act": "DELETE", "eft": "deny"}
    status, body = await put_rules(org, http, [deny], tenant=org.admin)
    assert status == 200, body
    assert body["rules"] == [deny], body
    status, body = await admin_call(
        env, http, "GET", f"/tenants/{org.admin.tenant_slug}/policy", org.admin.session
    )
    assert status == 200, body
    assert body["rules"] == [deny], body

    before = len(env.upstream.requests)
    for editor in (org.editor, org.editor2):
        for path in ("/reports/1", "/reports", "/reports/a/b"):
            status, body, _ = await call(env, http, "DELETE", path, editor.session)
            assert_denied(status, body)
    assert len(env.upstream.requests) == before, "a denied DELETE reached the upstream"

    # Every other write of the editors still passes, including on /reports.
    for editor, method, path in [
        (org.editor, "POST", "/reports/1"),
        (org.editor, "PUT", "/reports/1"),
        (org.editor2, "PATCH", "/reports/1"),
        (org.editor2, "DELETE", "/reportsx/1"),
        (org.editor, "DELETE", "/x"),
    ]:
        status, body, _ = await call(env, http, method, path, editor.session)
        assert_proxied(status, body, method, path)
    # The rule names editors only: the admin still deletes.
    status, body, _ = await call(env, http, "DELETE", "/reports/1", org.admin.session)
    assert_proxied(status, body, "DELETE", "/reports/1")
    # ... and it belongs to tenant A only.
    status, body, _ = await call(env, http, "DELETE", "/reports/1", org.other_editor.session)
    assert_proxied(status, body, "DELETE", "/reports/1")


async def test_rule_for_one_user_applies_to_that_user_only(
    org: Org, http: aiohttp.ClientSession
) -> None:
    env = org.env
    allow = {"sub": org.viewer.user_id, "obj": "/uploads/*", "act": "POST", "eft": "allow"}
    status, body = await put_rules(org, http, [allow], tenant=org.admin)
    assert status == 200, body

    status, body, _ = await call(env, http, "POST", "/uploads/a.txt", org.viewer.session)
    assert_proxied(status, body, "POST", "/uploads/a.txt")
    status, body, _ = await call(env, http, "POST", "/uploads/a.txt", org.viewer2.session)
    assert_denied(status, body)
    status, body, _ = await call(env, http, "PUT", "/uploads/a.txt", org.viewer.session)
    assert_denied(status, body)
    status, body, _ = await call(env, http, "POST", "/other", org.viewer.session)
    assert_denied(status, body)

    # PUT replaced the whole set: the earlier editor deny is gone.
    status, body, _ = await call(env, http, "DELETE", "/reports/1", org.editor.session)
    assert_proxied(status, body, "DELETE", "/reports/1")

    # A user deny beats the user's role allow, for that user only.
    deny = {"sub": org.editor.user_id, "obj": "/x", "act": "*", "eft": "deny"}
    status, body = await put_rules(org, http, [allow, deny], tenant=org.admin)
    assert status == 200, body
    status, body, _ = await call(env, http, "GET", "/x", org.editor.session)
    assert_denied(status, body)
    status, body, _ = await call(env, http, "GET", "/x", org.editor2.session)
    assert_proxied(status, body, "GET", "/x")

    status, body = await put_rules(org, http, [], tenant=org.admin)
    assert status == 200, body
    assert body["rules"] == [], body
    status, body, _ = await call(env, http, "GET", "/x", org.editor.session)
    assert_proxied(status, body, "GET", "/x")


async def test_viewer_deny_rule_holds_for_browsers_too(
    org: Org, http: aiohttp.ClientSession
) -> None:
    env = org.env
    deny = {"sub": "viewer", "obj": "/secret/*", "act": "*", "eft": "deny"}
    status, body = await put_rules(org, http, [deny], tenant=org.other)
    assert status == 200, body
    viewer = await invite_member(env, http, org.other, "viewer")
    before = len(env.upstream.requests)
    for accept in ("application/json", "text/html,application/xhtml+xml,*/*;q=0.8"):
        status, body, resp = await call(
            env, http, "GET", "/secret/plan", viewer.session, headers={"Accept": accept}
        )
        assert status == 403, body
        assert "Location" not in resp.headers
    assert len(env.upstream.requests) == before
    status, body, _ = await call(env, http, "GET", "/secretary", viewer.session)
    assert_proxied(status, body, "GET", "/secretary")
    status, body = await put_rules(org, http, [], tenant=org.other)
    assert status == 200, body


@pytest.mark.parametrize(
    "rule",
    [
        {"sub": "editor", "obj": "/x", "act": "GET", "eft": "maybe"},
        {"sub": "editor", "obj": "x", "act": "GET", "eft": "allow"},
        {"sub": "editor", "obj": "/x", "act": "GET", "eft": "allow", "dom": "*"},
        {"sub": "editor", "obj": "/x", "act": "GET", "eft": "allow", "dom": "t_someone_else"},
        {"sub": "editor", "obj": "/x"},
        {"sub": "editor", "obj": "/x", "act": "GET", "eft": "allow", "extra": 1},
        {"sub": 1, "obj": "/x", "act": "GET", "eft": "allow"},
        {"sub": "viewer", "obj": "/.gateway/admin/*", "act": "*", "eft": "allow"},
    ],
)
async def test_invalid_rules_are_422_and_change_nothing(
    org: Org, http: aiohttp.ClientSession, rule: dict[str, Any]
) -> None:
    keep = {"sub": "viewer", "obj": "/keep/*", "act": "POST", "eft": "allow"}
    status, body = await put_rules(org, http, [keep], tenant=org.admin)
    assert status == 200, body
    status, body = await put_rules(org, http, [keep, rule], tenant=org.admin)
    assert status == 422, body
    assert_error(body)
    status, body = await admin_call(
        org.env, http, "GET", f"/tenants/{org.admin.tenant_slug}/policy", org.admin.session
    )
    assert status == 200 and body["rules"] == [keep], body
    status, body = await put_rules(org, http, [], tenant=org.admin)
    assert status == 200, body


@pytest.mark.parametrize("obj", ["/a/../vault/*", "/vault//*", "/%76ault/*", "/./vault/*"])
async def test_non_canonical_deny_object_is_refused_or_enforced(
    org: Org, http: aiohttp.ClientSession, obj: str
) -> None:
    """A deny whose object is not in canonical form must never be a silent no-op."""
    deny = {"sub": "editor", "obj": obj, "act": "*", "eft": "deny"}
    status, body = await put_rules(org, http, [deny], tenant=org.admin)
    try:
        if status == 422:
            assert_error(body)
            return
        assert status == 200, body
        status, body, _ = await call(org.env, http, "GET", "/vault/key", org.editor.session)
        assert_denied(status, body)
    finally:
        status, body = await put_rules(org, http, [], tenant=org.admin)
        assert status == 200, body


async def test_more_than_200_rules_are_refused(org: Org, http: aiohttp.ClientSession) -> None:
    rules = [
        {"sub": "viewer", "obj": f"/many/{i}", "act": "POST", "eft": "allow"} for i in range(201)
    ]
    status, body = await put_rules(org, http, rules, tenant=org.admin)
    assert status == 422, body
    status, body = await put_rules(org, http, rules[:200], tenant=org.admin)
    assert status == 200, body
    assert len(body["rules"]) == 200
    status, body = await put_rules(org, http, [], tenant=org.admin)
    assert status == 200, body


@pytest.mark.parametrize("role", ["editor", "viewer"])
async def test_non_admins_cannot_read_or_change_the_policy(
    org: Org, http: aiohttp.ClientSession, role: str
) -> None:
    member: Account = getattr(org, role)
    path = f"/tenants/{org.admin.tenant_slug}/policy"
    status, body = await admin_call(org.env, http, "GET", path, member.session)
    assert_denied(status, body)
    allow_all = {"sub": member.user_id, "obj": "/*", "act": "*", "eft": "allow"}
    status, body = await admin_call(
        org.env, http, "PUT", path, member.session, {"rules": [allow_all]}
    )
    assert_denied(status, body)
    status, body = await admin_call(
        org.env,
        http,
        "PUT",
        f"/tenants/{org.admin.tenant_slug}/members/{member.user_id}",
        member.session,
        {"roles": ["admin"]},
    )
    assert_denied(status, body)


# --------------------------------------------------------------------------------------------
# 3. Tenant isolation of the admin API
# --------------------------------------------------------------------------------------------


def _cross_tenant_requests(org: Org) -> list[tuple[str, str, Any]]:
    b = org.other.tenant_slug
    b_id = org.other.tenant_id
    target = org.other_editor.user_id
    rules = {"rules": [{"sub": "viewer", "obj": "/*", "act": "*", "eft": "allow"}]}
    requests: list[tuple[str, str, Any]] = []
    for ref in (b, b_id):
        requests += [
            ("PUT", f"/tenants/{ref}/members/{target}", {"roles": ["viewer"]}),
            ("PUT", f"/tenants/{ref}/members/{org.admin.user_id}", {"roles": ["admin"]}),
            ("GET", f"/tenants/{ref}/policy", None),
            ("PUT", f"/tenants/{ref}/policy", rules),
            ("GET", f"/tenants/{ref}", None),
            ("PATCH", f"/tenants/{ref}", {"features": ["beta"]}),
        ]
    return requests


async def test_admin_of_a_gets_404_for_everything_of_b(
    org: Org, http: aiohttp.ClientSession
) -> None:
    env = org.env
    for method, path, body in _cross_tenant_requests(org):
        status, answer = await admin_call(env, http, method, path, org.admin.session, body)
        assert status == 404, (method, path, answer)
        assert_error(answer, "not-found")
    # A missing tenant answers exactly the same.
    status, missing = await admin_call(
        env, http, "GET", "/tenants/no-such-tenant/policy", org.admin.session
    )
    assert status == 404
    status, other = await admin_call(
        env, http, "GET", f"/tenants/{org.other.tenant_slug}/policy", org.admin.session
    )
    assert (status, other) == (404, missing)
    # Nothing of B changed: its editor is still an editor and its rules are still empty.
    status, body = await admin_call(
        env, http, "GET", f"/tenants/{org.other.tenant_slug}/policy", org.other.session
    )
    assert status == 200 and body["rules"] == [], body
    status, body, _ = await call(env, http, "POST", "/x", org.other_editor.session)
    assert_proxied(status, body, "POST", "/x")
    status, body = await admin_call(
        env, http, "GET", f"/tenants/{org.other.tenant_slug}", org.other.session
    )
    assert status == 200 and body["features"] == [], body


async def test_a_member_of_a_cannot_be_managed_through_b(
    org: Org, http: aiohttp.ClientSession
) -> None:
    """B's admin naming A's user under B's own tenant must not change A's membership."""
    status, body = await admin_call(
        org.env,
        http,
        "PUT",
        f"/tenants/{org.other.tenant_slug}/members/{org.viewer.user_id}",
        org.other.session,
        {"roles": ["admin"]},
    )
    assert status == 404, body
    status, body, _ = await call(org.env, http, "POST", "/x", org.viewer.session)
    assert_denied(status, body)


async def test_tenant_admin_cannot_patch_own_settings(
    org: Org, http: aiohttp.ClientSession
) -> None:
    slug = org.admin.tenant_slug
    status, body = await admin_call(org.env, http, "GET", f"/tenants/{slug}", org.admin.session)
    assert status == 200, body
    assert body["slug"] == slug
    before = body
    for patch in ({"features": ["beta"]}, {"upstream": "app"}, {"require_mfa": []}):
        status, body = await admin_call(
            org.env, http, "PATCH", f"/tenants/{slug}", org.admin.session, patch
        )
        assert_denied(status, body)
    status, body = await admin_call(org.env, http, "GET", f"/tenants/{slug}", org.admin.session)
    assert status == 200 and body == before, body


async def test_operator_can_patch_any_tenant(org: Org, http: aiohttp.ClientSession) -> None:
    for account in (org.admin, org.other):
        slug = account.tenant_slug
        for ref in (slug, account.tenant_id):
            status, body = await admin_call(
                org.env, http, "PATCH", f"/tenants/{ref}", org.operator, {"features": ["ops"]}
            )
            assert status == 200, body
            assert body["slug"] == slug and body["features"] == ["ops"], body
        status, body, _ = await call(org.env, http, "GET", "/x", account.session)
        assert_proxied(status, body, "GET", "/x")
        assert {k.lower(): v for k, v in body["headers"]}["x-tenant-features"] == "ops"
        status, body = await admin_call(
            org.env, http, "PATCH", f"/tenants/{slug}", org.operator, {"features": []}
        )
        assert status == 200, body
    # The operator also reads and writes any tenant's policy.
    path = f"/tenants/{org.other.tenant_slug}/policy"
    status, body = await admin_call(org.env, http, "GET", path, org.operator)
    assert status == 200, body
    status, body = await admin_call(
        org.env, http, "PATCH", "/tenants/no-such-tenant", org.operator, {"features": []}
    )
    assert status == 404, body


async def test_an_operator_who_is_also_a_tenant_admin_may_patch_its_settings(
    org: Org, http: aiohttp.ClientSession
) -> None:
    # The tenant admin role denies PATCH of settings; as an operator the same user acts with
    # the platform role only, so that deny must not bind them (regression).
    _, session = await cli_member(org.env, org.admin.tenant_slug, "admin", operator=True)
    status, body = await admin_call(
        org.env, http, "PATCH", f"/tenants/{org.admin.tenant_slug}", session, {"features": []}
    )
    assert status == 200, body
