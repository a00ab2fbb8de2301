"""Secrets end to end: admin API, CLI, the broker with assertions and API keys, KEK rotation,
tenant isolation, and a canary value that must appear nowhere but the resolve answer."""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.auth_helpers import (
    ADMIN_PREFIX,
    Account,
    AuthEnv,
    assert_error,
    auth_env,
    bearer,
    create_api_key,
    create_service_account,
    echo,
    http_client,
    post_json,
    signup,
    unique,
    upstream_headers,
)
from tests.support.gateway_proc import run_cli

pytestmark = pytest.mark.e2e
RESOLVE = "/.gateway/secrets/resolve"


@dataclass
class Org:
    """Two tenants, each with an admin and a service account allowed to read some secrets."""

    env: AuthEnv
    http: aiohttp.ClientSession
    a: Account
    b: Account
    key_a: str
    key_b: str


async def admin(
    org: Org, method: str, path: str, who: Account, body: Any = None
) -> tuple[int, Any]:
    headers = org.env.same_origin(who.session)
    if body is not None:
        headers["Content-Type"] = "application/json"
    async with org.http.request(
        method, f"{org.env.url}{ADMIN_PREFIX}{path}", headers=headers,
        data=json.dumps(body) if body is not None else None,
    ) as resp:  # fmt: skip
        raw = await resp.read()
    return resp.status, json.loads(raw) if raw else None


async def backend_key(env: AuthEnv, http: aiohttp.ClientSession, who: Account, obj: str) -> str:
    """A `viewer` service account's key; a tenant rule lets that account read `obj` secrets
    (the default policy grants no secret to anyone)."""
    account = await create_service_account(env, http, who, roles=["viewer"])
    rules = {"rules": [{"sub": account["id"], "obj": obj, "act": "read"}]}
    async with http.put(
        f"{env.url}{ADMIN_PREFIX}/tenants/{who.tenant_slug}/policy", data=json.dumps(rules),
        headers={**env.same_origin(who.session), "Content-Type": "application/json"},
    ) as resp:  # fmt: skip
        assert resp.status == 200, await resp.text()
    return str((await create_api_key(env, http, who, account["id"]))["key"])


@pytest.fixture
async def org(tmp_path: Path) -> AsyncIterator[Org]:
    async with auth_env(tmp_path) as env, http_client() as http:
        a = await signup(env, http, tenant=unique("sa"))
        b = await signup(env, http, tenant=unique("sb"))
        key_a = await backend_key(env, http, a, "secret:db-*")
        key_b = await backend_key(env, http, b, "secret:*")
        yield Org(env, http, a, b, key_a, key_b)


async def resolve(org: Org, ref: Any, headers: dict[str, str]) -> tuple[int, Any]:
    status, body, _ = await post_json(org.http, f"{org.env.url}{RESOLVE}", {"ref": ref}, headers)
    return status, body


async def assertion(org: Org, key: str) -> str:
    """The `X-Gateway-Assertion` the upstream received for a request made with `key`."""
    status, body, _ = await echo(org.env, org.http, "/echo/whoami", headers=bearer(key))
    assert status == 200, body
    return upstream_headers(body)["x-gateway-assertion"]


async def test_admin_api_and_brokered_resolve(org: Org) -> None:
    a, b = org.a, org.b
    path = f"/tenants/{a.tenant_slug}/secrets/db-password"
    assert await admin(org, "PUT", path, a, {"value": "first-value"}) == (
        201, {"ref": f"secret://{a.tenant_slug}/db-password#1", "version": 1},
    )  # fmt: skip
    status, body = await admin(org, "PUT", path, a, {"value": "second-value"})
    assert (status, body["version"]) == (201, 2)
    await admin(org, "PUT", f"/tenants/{a.tenant_slug}/secrets/stripe", a, {"value": "sk"})
    status, listed = await admin(org, "GET", f"/tenants/{a.tenant_slug}/secrets", a)
    assert status == 200
    assert [(s["name"], s["latest_version"], s["versions"]) for s in listed["secrets"]] == [
        ("db-password", 2, 2), ("stripe", 1, 1),
    ]  # fmt: skip
    assert "value" not in json.dumps(listed)
    # Another tenant's admin cannot see or write A's secrets.
    assert (await admin(org, "GET", f"/tenants/{a.tenant_slug}/secrets", b))[0] == 404
    assert (await admin(org, "PUT", path, b, {"value": "x"}))[0] == 404

    ref = f"secret://{a.tenant_slug}/db-password"
    assert await resolve(org, ref, bearer(org.key_a)) == (
        200,
        {"value": "second-value", "version": 2},
    )
    assert await resolve(org, f"{ref}#1", bearer(org.key_a)) == (
        200,
        {"value": "first-value", "version": 1},
    )
    token_a = await assertion(org, org.key_a)
    headers_a = {"X-Gateway-Assertion": token_a}
    assert (await resolve(org, ref, headers_a))[1]["value"] == "second-value"
    # Policy: A's account reads db-* only.
    status, body = await resolve(org, f"secret://{a.tenant_slug}/stripe", headers_a)
    assert status == 403
    assert_error(body, "policy-deny")
    # Another tenant's reference: 404 with B's key and with B's assertion.
    token_b = await assertion(org, org.key_b)
    for headers in (bearer(org.key_b), {"X-Gateway-Assertion": token_b}):
        status, body = await resolve(org, ref, headers)
        assert status == 404 and "second-value" not in json.dumps(body)
    # Unknown schemes, no credentials, forged or tampered assertions.
    assert (await resolve(org, "vault://secret/db#password", headers_a))[0] == 400
    assert (await resolve(org, ref, {}))[0] == 401
    head, claims, sig = token_a.split(".")
    forged = json.loads(base64.urlsafe_b64decode(claims + "=="))
    forged["tenant"] = {"id": b.tenant_id, "slug": b.tenant_slug}
    tampered = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    for bad in (f"{head}.{tampered}.{sig}", f"{head}.{claims}.{sig[:-4]}AAAA", "x.y.z"):
        assert (await resolve(org, ref, {"X-Gateway-Assertion": bad}))[0] == 401
    assert (await resolve(org, ref, bearer("gw_" + "x" * 40)))[0] == 401
    # Deletion destroys every version.
    assert (await admin(org, "DELETE", path, a))[0] == 204
    assert (await resolve(org, f"{ref}#1", bearer(org.key_a)))[0] == 404
    audit = audit_records(org.env)
    resolves = [r for r in audit if r["action"] == "secret.resolve"]
    assert len(resolves) >= 12 and {r["outcome"] for r in resolves} == {"success", "failure"}


def audit_records(env: AuthEnv) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{env.state_dir / 'gateway.db'}?mode=ro", uri=True)
    try:
        return [json.loads(r[0]) for r in conn.execute("SELECT record FROM audit_events")]
    finally:
        conn.close()


async def test_canary_appears_only_in_the_resolve_answer(org: Org) -> None:
    env, a = org.env, org.a
    canary = f"canary-{uuid.uuid4().hex}"
    cli = ["--config", str(env.gw.config_path)]
    outputs = []
    code, out, err = await run_cli(
        "secrets",
        "put",
        a.tenant_slug,
        "db-canary",
        *cli,
        cwd=env.gw.workdir,
        stdin=f"{canary}\n".encode(),
    )
    assert code == 0, err
    assert out.strip() == f"secret://{a.tenant_slug}/db-canary#1 (version 1)"
    outputs += [out, err]
    status, body = await admin(
        org, "PUT", f"/tenants/{a.tenant_slug}/secrets/db-canary", a, {"value": canary}
    )
    assert (status, body["version"]) == (201, 2)
    for args in (
        ("secrets", "list", a.tenant_slug),
        ("keys", "rotate-kek", "--tenant", a.tenant_slug),
    ):
        code, out, err = await run_cli(*args, *cli, cwd=env.gw.workdir)
        assert code == 0, err
        outputs += [out, err]
    assert "2 data keys re-wrapped" in outputs[-2] and "local:" in outputs[-2]
    ref = f"secret://{a.tenant_slug}/db-canary"
    for version in (1, 2):
        assert await resolve(org, f"{ref}#{version}", bearer(org.key_a)) == (
            200,
            {"value": canary, "version": version},
        )
    assert (await resolve(org, ref, {"X-Gateway-Assertion": await assertion(org, org.key_a)}))[1][
        "value"
    ] == canary
    status, listed = await admin(org, "GET", f"/tenants/{a.tenant_slug}/secrets", a)
    assert status == 200 and listed["secrets"][0]["kek"].endswith(":v2")
    async with org.http.get(f"http://127.0.0.1:{env.gw.metrics_port}/metrics") as resp:
        outputs.append(await resp.text())
    needle = canary.encode()
    for path in sorted(env.state_dir.rglob("*")):
        if path.is_file():
            assert needle not in path.read_bytes(), path
    assert canary not in env.gw.logs()
    assert canary not in json.dumps(audit_records(env))
    assert all(canary not in text for text in outputs)
