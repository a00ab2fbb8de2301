"""Webhook verification end to end: a route with `verify_webhook` forwards only signed,
fresh, first-seen bodies (byte for byte); everything else is 401 and audited."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.secrets.values import SecretValue
from gateway.secrets.webhooks import header_value
from tests.e2e.auth_helpers import ADMIN_PREFIX, AuthEnv, http_client, signup, unique
from tests.support.gateway_proc import base_config, run_gateway
from tests.support.upstream import EchoUpstream, run_echo_upstream

pytestmark = pytest.mark.e2e
SECRET = SecretValue("whsec-e2e-9b3c41")
HEADER = "X-Hook-Signature"


async def start(workdir: Path, upstream: EchoUpstream, slug: str) -> AsyncIterator[AuthEnv]:
    config = base_config(upstream.url, workdir)
    config["rate_limits"] = {"defaults": False}
    hook = {"secret": "hook-key", "header": HEADER, "tolerance": 300, "tenant": slug}
    config["upstreams"].insert(0, {
        "name": "hooks", "url": upstream.url, "match": {"path_prefix": "/hooks"},
        "public_paths": ["/hooks/*"], "verify_webhook": hook,
    })  # fmt: skip
    async with run_gateway(workdir, config) as gw:
        yield AuthEnv(gw, upstream)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[AuthEnv, aiohttp.ClientSession, str]]:
    slug = unique("wh")
    async with run_echo_upstream() as upstream, http_client() as http:
        async for running in start(tmp_path, upstream, slug):
            admin = await signup(running, http, tenant=slug)
            async with http.put(
                f"{running.url}{ADMIN_PREFIX}/tenants/{slug}/secrets/hook-key",
                data=json.dumps({"value": SECRET.reveal()}),
                headers={**running.same_origin(admin.session), "Content-Type": "application/json"},
            ) as resp:  # fmt: skip
                assert resp.status == 201, await resp.text()
            yield running, http, admin.tenant_id


async def send(
    env: AuthEnv, http: aiohttp.ClientSession, body: bytes, signature: str | None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers[HEADER] = signature
    async with http.post(f"{env.url}/hooks/paid", data=body, headers=headers) as resp:
        raw = await resp.read()
    return resp.status, json.loads(raw) if raw else None


def audit(env: AuthEnv, tenant_id: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{env.state_dir / 'gateway.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT outcome, record FROM audit_events WHERE action = 'webhook.verify' "
            "AND tenant_id = ? ORDER BY seq", (tenant_id,),
        ).fetchall()  # fmt: skip
    finally:
        conn.close()
    return [(str(r[0]), json.loads(r[1])["details"]["reason"]) for r in rows]


async def test_valid_invalid_replayed_and_stale(
    env: tuple[AuthEnv, aiohttp.ClientSession, str],
) -> None:
    running, http, tenant_id = env
    body = json.dumps({"event": "invoice.paid", "id": unique("evt")}).encode()
    now = int(time.time())
    good = header_value(SECRET, now, body)
    status, echoed = await send(running, http, body, good)
    assert status == 200, echoed
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()  # forwarded byte for byte
    assert echoed["path"] == "/hooks/paid"
    assert (await send(running, http, body, good))[0] == 401  # replayed
    assert (await send(running, http, body + b" ", header_value(SECRET, now, body)))[0] == 401
    assert (await send(running, http, body, header_value(SecretValue("wrong"), now, body)))[
        0
    ] == 401
    assert (await send(running, http, body, header_value(SECRET, now - 301, body)))[0] == 401
    assert (await send(running, http, body, None))[0] == 401
    status, refused = await send(running, http, body, "t=garbage")
    assert status == 401 and refused["error"]["code"] == "unauthenticated"
    assert (await send(running, http, body, header_value(SECRET, now + 1, body)))[0] == 200
    assert audit(running, tenant_id) == [
        ("success", "ok"), ("failure", "replayed"), ("failure", "mismatch"),
        ("failure", "mismatch"), ("failure", "stale"), ("failure", "missing"),
        ("failure", "malformed"), ("success", "ok"),
    ]  # fmt: skip
    assert SECRET.reveal() not in running.gw.logs()
    # Routes without verify_webhook are untouched.
    async with http.get(f"{running.url}/public/x") as resp:
        assert resp.status == 200
