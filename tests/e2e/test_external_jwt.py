"""External JWT issuers end to end: `Authorization: Bearer <JWT>` through the real gateway."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization

from tests.e2e.auth_helpers import (
    Account,
    AuthEnv,
    auth_env,
    echo,
    http_client,
    signup,
    upstream_headers,
)
from tests.support.fake_oidc import FakeOidc, forged_token, issuer_config, run_fake_oidc

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@dataclass
class Env:
    auth: AuthEnv
    idp: FakeOidc
    admin: Account
    other: Account

    def claims(self, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {
            "iss": self.idp.issuer,
            "aud": "gateway",
            "sub": "deploy-bot",
            "iat": now,
            "exp": now + 300,
            "tenant": self.admin.tenant_slug,
            "roles": ["editor"],
        }
        return {k: v for k, v in {**base, **extra}.items() if v is not None}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    async with run_fake_oidc() as idp:
        workdir = tmp_path_factory.mktemp("jwt")
        async with auth_env(
            workdir, jwt_issuers=[issuer_config(idp)], tenancy={"header": True}
        ) as running:
            async with http_client() as http:
                admin, other = await signup(running, http), await signup(running, http)
            yield Env(running, idp, admin, other)


async def call(env: Env, token: str, **headers: str) -> tuple[int, Any]:
    async with http_client() as http:
        status, body, _ = await echo(
            env.auth, http, "/echo/jwt", headers={"Authorization": f"Bearer {token}", **headers}
        )
    return status, body


async def test_a_valid_token_reaches_the_upstream_as_a_machine_principal(env: Env) -> None:
    for alg in ("RS256", "ES256"):
        status, body = await call(env, env.idp.mint(env.claims(), alg=alg))
        assert status == 200, body
        seen = upstream_headers(body)
        assert seen["x-auth-method"] == "jwt"
        assert seen["x-user-id"] == "jwt:127.0.0.1:deploy-bot"
        assert seen["x-tenant-id"] == env.admin.tenant_id
        assert seen["x-user-roles"] == "editor"
        assert "x-user-email" not in seen and seen["x-gateway-assertion"]


def _hs256_with_public_key(env: Env) -> str:
    pem = (
        env.idp.keys["rsa-1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return forged_token({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}, env.claims(), pem)


@pytest.mark.parametrize(
    "case",
    ["none", "hs256", "audience", "issuer", "expired", "unknown-kid", "tenant", "role"],
)
async def test_refused_tokens_get_401(env: Env, case: str) -> None:
    now = int(time.time())
    idp = env.idp
    tokens = {
        "none": lambda: forged_token({"alg": "none"}, env.claims(), None),
        "hs256": lambda: _hs256_with_public_key(env),
        "audience": lambda: idp.mint(env.claims(aud="another-service")),
        "issuer": lambda: idp.mint(env.claims(iss="https://evil.example")),
        "expired": lambda: idp.mint(env.claims(exp=now - 600, iat=now - 900)),
        "unknown-kid": lambda: idp.mint(env.claims(), kid="nope", key=idp.keys["rsa-1"]),
        "tenant": lambda: idp.mint(env.claims(tenant="no-such-tenant")),
        "role": lambda: idp.mint(env.claims(roles=["operator"])),
    }
    status, body = await call(env, tokens[case]())
    assert status == 401, body
    assert "deploy-bot" not in json.dumps(body)


async def test_a_token_cannot_act_in_another_tenant(env: Env) -> None:
    token = env.idp.mint(env.claims())
    status, _ = await call(env, token, **{"X-Tenant": env.other.tenant_slug})
    assert status == 403
    status, _ = await call(env, token, **{"X-Tenant": env.admin.tenant_slug})
    assert status == 200
