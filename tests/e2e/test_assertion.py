"""`X-Gateway-Assertion` end to end: what the upstream receives verifies against the JWKS,
also while `gateway keys rotate` runs against the live process."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import (
    AuthEnv,
    auth_env,
    bearer,
    create_api_key,
    create_service_account,
    echo,
    http_client,
    signup,
    upstream_header_list,
    upstream_headers,
)
from tests.support.gateway_proc import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

AUDIENCE = "app"  # base_config's upstream name
ISSUER = "gateway"  # no public_url configured
HEADER = "x-gateway-assertion"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AuthEnv]:
    async with auth_env(tmp_path_factory.mktemp("assertion")) as running:
        yield running


async def fetch_jwks(env: AuthEnv, http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get(f"{env.url}/.gateway/jwks.json") as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "public, max-age=60"
        return dict(await resp.json())


def verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """What an upstream does: the key by `kid`, then EdDSA with `aud` and `iss` pinned."""
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(token, key.key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)


async def test_jwks_publishes_public_keys_only(env: AuthEnv) -> None:
    async with http_client() as http:
        jwks = await fetch_jwks(env, http)
    assert jwks["keys"]
    for jwk in jwks["keys"]:
        assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
        assert "d" not in jwk


async def test_a_session_request_carries_a_verifiable_assertion(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        status, body, _ = await echo(env, http, "/echo/a", headers=env.cookie(account.session))
        assert status == 200, body
        jwks = await fetch_jwks(env, http)
        async with http.get(
            f"{env.url}/.gateway/auth/session", headers=env.cookie(account.session)
        ) as r:
            session = await r.json()
    claims = verify(upstream_headers(body)[HEADER], jwks)
    assert claims["sub"] == account.user_id
    assert claims["tenant"] == {"id": account.tenant_id, "slug": account.tenant_slug}
    assert claims["roles"] == sorted(account.roles)
    assert claims["email"] == account.email
    assert claims["auth_method"] == "session"
    assert claims["exp"] - claims["iat"] == 60
    assert claims["sid"] == session["session"]["id"]


async def test_an_api_key_request_carries_the_key_id_and_no_email(env: AuthEnv) -> None:
    async with http_client() as http:
        admin = await signup(env, http)
        account = await create_service_account(env, http, admin, roles=["viewer", "editor"])
        created = await create_api_key(env, http, admin, account["id"])
        status, body, _ = await echo(env, http, "/echo/k", headers=bearer(created["key"]))
        assert status == 200, body
        jwks = await fetch_jwks(env, http)
    claims = verify(upstream_headers(body)[HEADER], jwks)
    assert (claims["sub"], claims["sid"], claims["email"]) == (account["id"], created["id"], None)
    assert claims["roles"] == ["editor", "viewer"]
    assert claims["auth_method"] == "api_key"


async def test_public_paths_receive_no_assertion(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        forged = {**env.cookie(account.session), "X-Gateway-Assertion": "forged"}
        status, body, _ = await echo(env, http, "/public/x", headers=forged)
    assert status == 200, body
    assert HEADER not in {name.lower() for name, _ in upstream_header_list(body)}


@pytest.mark.parametrize(
    "name", ["X-Gateway-Assertion", "x_gateway_assertion", "X.Gateway.Assertion"]
)
async def test_a_forged_inbound_assertion_never_reaches_the_upstream(
    env: AuthEnv, name: str
) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        before = len(env.upstream.requests)
        status, _, _ = await echo(env, http, "/echo/anon", headers={name: "forged"})
        assert status == 401
        assert len(env.upstream.requests) == before
        headers = {**env.cookie(account.session), name: "forged"}
        status, body, _ = await echo(env, http, "/echo/f", headers=headers)
        assert status == 200, body
        jwks = await fetch_jwks(env, http)
    received = upstream_header_list(body)
    copies = [v for k, v in received if k.lower().replace("_", "-").replace(".", "-") == HEADER]
    assert len(copies) == 1 and copies[0] != "forged"
    assert verify(copies[0], jwks)["sub"] == account.user_id


async def observe(
    env: AuthEnv, http: aiohttp.ClientSession, session: str
) -> tuple[float, float, str, set[str]]:
    """One sample: (sent at, answered at, assertion kid, JWKS kids), after checking that the
    assertion verifies against the JWKS fetched just before the request and just after."""
    before = await fetch_jwks(env, http)
    sent = time.time()
    status, body, _ = await echo(env, http, "/echo/r", headers=env.cookie(session))
    answered = time.time()
    assert status == 200, body
    token = upstream_headers(body)[HEADER]
    verify(token, before)
    after = await fetch_jwks(env, http)
    verify(token, after)
    kids = {k["kid"] for k in after["keys"]}
    return sent, answered, jwt.get_unverified_header(token)["kid"], kids


async def test_rotation_publishes_first_then_switches_without_a_failure(tmp_path: Path) -> None:
    async with auth_env(tmp_path) as env, http_client() as http:
        account = await signup(env, http)
        _, _, old_kid, _ = await observe(env, http, account.session)
        assert env.gw.config_path is not None
        config = ("--config", str(env.gw.config_path))
        code, out, err = await run_cli(
            "keys", "rotate", "--publish-delay", "2", *config, cwd=tmp_path
        )
        assert code == 0, err
        ring = json.loads((env.state_dir / "signing" / "keys.json").read_text())["keys"]
        new = ring[-1]
        assert new["kid"] in out and old_kid in out
        samples = await sample_until_switched(env, http, account.session, new["kid"])
        code, listed, err = await run_cli("keys", "list", *config, cwd=tmp_path)
        assert code == 0, err
    states = {line.split()[0]: line.split()[1] for line in listed.splitlines()[1:]}
    assert states == {old_kid: "retiring", new["kid"]: "active"}
    activates = new["activates_at"]
    # Published before it signs: seen in the JWKS while assertions still used the old kid.
    assert any(new["kid"] in kids and answered < activates for _, answered, _, kids in samples)
    for sent, answered, kid, kids in samples:
        assert old_kid in kids  # the old key stays published throughout the overlap
        if answered < activates:
            assert kid == old_kid
        if sent > activates + 1.5:  # every process re-reads the ring at least once a second
            assert kid == new["kid"]
    assert samples[-1][2] == new["kid"]


async def sample_until_switched(
    env: AuthEnv, http: aiohttp.ClientSession, session: str, new_kid: str
) -> list[tuple[float, float, str, set[str]]]:
    """Samples every ~50 ms until assertions have carried the new kid for a second (bounded)."""
    samples = []
    switched_at = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sample = await observe(env, http, session)
        samples.append(sample)
        if sample[2] == new_kid and switched_at is None:
            switched_at = time.monotonic()
        if switched_at is not None and time.monotonic() - switched_at > 1:
            return samples
        await asyncio.sleep(0.05)
    raise AssertionError(f"the new key never signed: {samples[-3:]}")
