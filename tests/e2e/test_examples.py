"""The example apps (examples/python, examples/node) as real processes behind the real gateway.

Each example verifies `X-Gateway-Assertion` against the gateway's `/.gateway/jwks.json` on
every request. Through the gateway, a signed-in user is recognised with their tenant and
roles; straight to the example (bypassing the gateway), forged `X-User-*` headers get nothing
but a 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.e2e.auth_helpers import (
    INSECURE_COOKIE,
    PASSWORD,
    http_client,
    new_email,
    post_json,
    set_cookie_value,
    unique,
)
from tests.support.gateway_proc import (
    GatewayProcess,
    base_config,
    run_cli,
    run_gateway,
    stop_process,
)
from tests.support.net import free_port, wait_for_http

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
AUDIENCE = "app"
EXAMPLES = [
    pytest.param("python", id="python"),
    pytest.param(
        "node",
        id="node",
        marks=pytest.mark.skipif(NODE is None, reason="`node` is not installed (Node.js 20+)"),
    ),
]


def example_command(kind: str) -> list[str]:
    if kind == "python":
        return [sys.executable, str(ROOT / "examples" / "python" / "app.py")]
    assert NODE is not None
    return [NODE, str(ROOT / "examples" / "node" / "server.js")]


@dataclass
class ExampleEnv:
    """A running example app and the gateway in front of it."""

    gw: GatewayProcess
    app_url: str
    app_log: Path

    @property
    def url(self) -> str:
        return self.gw.url

    def logs(self) -> str:
        return f"--- example ---\n{self.app_log.read_text(errors='replace')}\n" + (
            f"--- gateway ---\n{self.gw.logs()}"
        )


@contextlib.asynccontextmanager
async def example_behind_gateway(
    kind: str, workdir: Path, min_refetch: float = 1
) -> AsyncIterator[ExampleEnv]:
    """Starts the example on a free port, then the gateway with one upstream `app` for it."""
    workdir.mkdir(parents=True, exist_ok=True)
    app_port = free_port()
    app_url = f"http://127.0.0.1:{app_port}"
    config = base_config(app_url, workdir, rate_limits={"defaults": False})
    config["upstreams"][0]["public_paths"] = []
    gateway_url = f"http://{config['listen']}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
        "PORT": str(app_port),
        "HOST": "127.0.0.1",
        "GATEWAY_JWKS_URL": f"{gateway_url}/.gateway/jwks.json",
        "GATEWAY_AUDIENCE": AUDIENCE,
        "GATEWAY_JWKS_MIN_REFETCH_SECONDS": str(min_refetch),
    }
    app_log = workdir / f"example-{kind}.log"
    with app_log.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *example_command(kind), env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
    try:
        try:
            await wait_for_http(app_url, timeout=20)
        except TimeoutError as exc:
            raise AssertionError(app_log.read_text(errors="replace")) from exc
        async with run_gateway(workdir, config) as gw:
            yield ExampleEnv(gw, app_url, app_log)
    finally:
        await stop_process(proc)


async def sign_up(env: ExampleEnv, http: aiohttp.ClientSession) -> dict[str, Any]:
    """A new user and tenant through the gateway's JSON API; the body plus `session`."""
    email = new_email()
    body = {"email": email, "password": PASSWORD, "tenant": unique("t")}
    status, data, resp = await post_json(http, f"{env.url}/.gateway/auth/signup", body)
    assert status == 201, data
    session = set_cookie_value(resp, INSECURE_COOKIE)
    assert session
    return {**data, "email": email, "session": session}


async def get_json(
    http: aiohttp.ClientSession, url: str, headers: Mapping[str, str] | None = None
) -> tuple[int, Any]:
    async with http.get(url, headers=dict(headers or {}), allow_redirects=False) as resp:
        raw = await resp.read()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, raw.decode(errors="replace")


def cookie(session: str) -> dict[str, str]:
    return {"Cookie": f"{INSECURE_COOKIE}={session}", "Accept": "application/json"}


def forged_assertion(kid: str, tenant_id: str = "ten_forged") -> str:
    """What an attacker can mint: a well-formed assertion signed by a key of their own."""
    now = int(time.time())
    claims = {
        "iss": "gateway",
        "aud": AUDIENCE,
        "sub": "usr_attacker",
        "tenant": {"id": tenant_id, "slug": "victim"},
        "roles": ["admin"],
        "email": "attacker@example.test",
        "sid": "ses_forged",
        "auth_method": "session",
        "iat": now,
        "nbf": now,
        "exp": now + 30,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid})


FORGED_HEADERS = {
    "X-User-Id": "usr_attacker",
    "X-User-Email": "attacker@example.test",
    "X-Tenant-Id": "ten_forged",
    "X-Tenant-Slug": "victim",
    "X-User-Roles": "admin",
    "X-Auth-Method": "session",
    "Accept": "application/json",
}


@pytest.mark.parametrize("kind", EXAMPLES)
async def test_signed_in_user_gets_their_verified_tenant_and_roles(
    kind: str, tmp_path: Path
) -> None:
    """Needs the gateway to inject `X-Gateway-Assertion` (issue 5)."""
    async with example_behind_gateway(kind, tmp_path) as env, http_client() as http:
        alice = await sign_up(env, http)
        bob = await sign_up(env, http)
        for user in (alice, bob):
            status, body = await get_json(http, f"{env.url}/whoami", cookie(user["session"]))
            assert status == 200, (body, env.logs())
            assert body["verified"] is True
            assert body["sub"] == user["user"]["id"]
            assert body["email"] == user["email"]
            assert body["tenant"] == {"id": user["tenant"]["id"], "slug": user["tenant"]["slug"]}
            assert body["roles"] == ["admin"]
            assert body["auth_method"] == "session"
            assert body["path"] == "/whoami"


@pytest.mark.parametrize("kind", EXAMPLES)
async def test_a_forged_assertion_sent_to_the_gateway_is_replaced(
    kind: str, tmp_path: Path
) -> None:
    """The client's own `X-Gateway-Assertion` never reaches the app; the gateway's does."""
    async with example_behind_gateway(kind, tmp_path) as env, http_client() as http:
        user = await sign_up(env, http)
        headers = {**cookie(user["session"]), "X-Gateway-Assertion": forged_assertion("k1")}
        status, body = await get_json(http, f"{env.url}/", headers)
        assert status == 200, (body, env.logs())
        assert body["sub"] == user["user"]["id"]
        assert body["tenant"]["id"] == user["tenant"]["id"]
        # Without a session the gateway answers itself; the forged assertion goes nowhere.
        status, body = await get_json(
            http, f"{env.url}/", {**FORGED_HEADERS, "X-Gateway-Assertion": forged_assertion("k1")}
        )
        assert status == 401, body
        assert "verified" not in body


@pytest.mark.parametrize("kind", EXAMPLES)
async def test_bypassing_the_gateway_with_forged_headers_is_refused(
    kind: str, tmp_path: Path
) -> None:
    async with example_behind_gateway(kind, tmp_path) as env, http_client() as http:
        # Plain identity headers and no assertion: the headers alone prove nothing.
        status, body = await get_json(http, f"{env.app_url}/admin", FORGED_HEADERS)
        assert status == 401, (body, env.logs())
        assert body["error"]["code"] == "assertion-missing"

        # Headers plus an assertion the attacker signed: the gateway never published its kid.
        headers = {**FORGED_HEADERS, "X-Gateway-Assertion": forged_assertion("attacker-key")}
        status, body = await get_json(http, f"{env.app_url}/admin", headers)
        assert status == 401, (body, env.logs())
        assert body["error"]["code"] == "assertion-kid"

        # Even naming the gateway's real kid does not help without its private key.
        status, jwks = await get_json(http, f"{env.url}/.gateway/jwks.json")
        assert status == 200, jwks
        kid = jwks["keys"][0]["kid"]
        headers = {**FORGED_HEADERS, "X-Gateway-Assertion": forged_assertion(kid)}
        status, body = await get_json(http, f"{env.app_url}/admin", headers)
        assert status == 401, (body, env.logs())
        assert body["error"]["code"] == "assertion-invalid"


@pytest.mark.parametrize("kind", EXAMPLES)
async def test_the_example_follows_a_key_rotation_without_restart(
    kind: str, tmp_path: Path
) -> None:
    """`gateway keys rotate`: the new kid appears in the JWKS, then signs; the example, which
    cached the old key set, refetches on the unknown kid and keeps accepting the user.

    Rotating with `--publish-delay 0` skips the publication window a real rotation has, so the
    example's refetch floor is set to 0 here; the floor itself is covered by the unit tests.
    """
    async with (
        example_behind_gateway(kind, tmp_path, min_refetch=0) as env,
        http_client() as http,
    ):
        user = await sign_up(env, http)
        status, body = await get_json(http, f"{env.url}/", cookie(user["session"]))
        assert status == 200, (body, env.logs())
        old_kid = body["kid"]
        assert env.gw.config_path is not None
        code, out, err = await run_cli(
            "keys",
            "rotate",
            "--publish-delay",
            "0",
            "--config",
            str(env.gw.config_path),
            cwd=tmp_path,
        )
        assert code == 0, err
        # Running gateways re-read the key ring at most once a second: poll until it signs
        # with the new key; every answer on the way must be a verified 200.
        deadline = time.monotonic() + 15
        while True:
            status, body = await get_json(http, f"{env.url}/", cookie(user["session"]))
            assert status == 200, (body, env.logs())
            if body["kid"] != old_kid:
                break
            assert time.monotonic() < deadline, "the gateway never signed with the new key"
            await asyncio.sleep(0.1)
        assert body["kid"] in out
        status, jwks = await get_json(http, f"{env.url}/.gateway/jwks.json")
        assert {key["kid"] for key in jwks["keys"]} >= {old_kid, body["kid"]}
