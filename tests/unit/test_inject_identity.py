"""InjectIdentity: the identity headers of a principal, built once per distinct identity."""

from __future__ import annotations

import dataclasses

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.config.headers import DEFAULT_HEADER_NAMES, OAUTH2_PROXY_HEADER_NAMES
from gateway.identity.models import Tenant
from gateway.identity.principal import Principal
from gateway.pipeline.scope import RequestScope
from gateway.pipeline.stages import inject
from gateway.pipeline.stages.inject import InjectIdentity

TENANT = Tenant("t_1", "acme", 0.0, features=("beta", "audit"))
ALICE = Principal("user", "u_1", "a@x", TENANT, ("viewer", "admin"), "session")


async def injected(stage: InjectIdentity, who: Principal, public: bool = False) -> dict[str, str]:
    scope = RequestScope(make_mocked_request("GET", "/app"), "req-1", 0.0)
    scope.principal, scope.public = who, public
    assert await stage(scope) is None
    return dict(scope.upstream_headers)


async def test_the_headers_of_a_user() -> None:
    assert await injected(InjectIdentity(DEFAULT_HEADER_NAMES), ALICE) == {
        "X-Tenant-Id": "t_1",
        "X-Tenant-Slug": "acme",
        "X-User-Id": "u_1",
        "X-User-Email": "a@x",
        "X-User-Roles": "admin,viewer",
        "X-Auth-Method": "session",
        "X-Tenant-Features": "audit,beta",
    }


async def test_oauth2_proxy_names_add_the_preferred_username() -> None:
    headers = await injected(InjectIdentity(OAUTH2_PROXY_HEADER_NAMES), ALICE)
    assert headers["X-Forwarded-User"] == "u_1"
    assert headers["X-Forwarded-Email"] == headers["X-Forwarded-Preferred-Username"] == "a@x"


async def test_a_changed_identity_is_never_answered_from_the_block_cache() -> None:
    stage = InjectIdentity(DEFAULT_HEADER_NAMES)
    assert (await injected(stage, ALICE))["X-User-Roles"] == "admin,viewer"
    demoted = dataclasses.replace(ALICE, roles=("viewer",))
    assert (await injected(stage, demoted))["X-User-Roles"] == "viewer"
    other_tenant = dataclasses.replace(ALICE, tenant=dataclasses.replace(TENANT, features=()))
    assert (await injected(stage, other_tenant))["X-Tenant-Features"] == ""
    robot = dataclasses.replace(ALICE, kind="service_account", email=None, auth_method="api_key")
    headers = await injected(stage, robot)
    assert "X-User-Email" not in headers and headers["X-Auth-Method"] == "api_key"


async def test_public_routes_and_anonymous_requests_get_none() -> None:
    stage = InjectIdentity(DEFAULT_HEADER_NAMES)
    assert await injected(stage, ALICE, public=True) == {}


async def test_the_block_table_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    stage = InjectIdentity(DEFAULT_HEADER_NAMES)
    monkeypatch.setattr(inject, "MAX_BLOCKS", 3)
    for n in range(10):
        who = dataclasses.replace(ALICE, id=f"u_{n}")
        assert (await injected(stage, who))["X-User-Id"] == f"u_{n}"
        assert len(stage._blocks) <= 3
