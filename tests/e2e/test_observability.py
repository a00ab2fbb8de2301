"""Observability against the real process: redacted JSON logs, metrics on the metrics
listener only, `traceparent` to the upstream, OTLP export when configured."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.auth_helpers import (
    AuthEnv,
    auth_env,
    bearer,
    create_api_key,
    create_service_account,
    csrf_token,
    echo,
    http_client,
    signin,
    signup,
    upstream_headers,
)
from tests.support.gateway_proc import base_config, run_gateway
from tests.support.net import free_port
from tests.support.upstream import run_echo_upstream

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CANARY_PASSWORD = "canary-Password-7f3a9c"
CANARY_WRONG = "canary-Wrong-1b2c3d"
CANARY_QUERY = "canary-query-5e6f"
CANARY_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.Y2FuYXJ5LXNpZ25hdHVyZQ"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AuthEnv]:
    workdir = tmp_path_factory.mktemp("observability")
    async with auth_env(workdir, logging={"level": "debug"}) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def canaries(env: AuthEnv) -> list[str]:
    """Runs the full scenario once; returns every secret it handed to the gateway."""
    async with http_client() as http:
        admin = await signup(env, http, password=CANARY_PASSWORD)
        status, _, _ = await signin(env, http, admin.email, CANARY_WRONG)
        assert status == 401
        account = await create_service_account(env, http, admin, roles=["viewer"])
        key = (await create_api_key(env, http, admin, account["id"]))["key"]
        status, _, _ = await echo(env, http, f"/data?token={CANARY_QUERY}", headers=bearer(key))
        assert status == 200
        status, _, _ = await echo(env, http, "/data", headers=env.cookie(admin.session))
        assert status == 200
        status, _, _ = await echo(env, http, "/data", headers=bearer(CANARY_JWT))
        assert status == 401
        csrf = await csrf_token(env, http, admin.session)
        async with http.post(
            f"{env.url}/.gateway/auth/signout", headers=env.same_origin(admin.session)
        ) as resp:
            assert resp.status == 204
    return [CANARY_PASSWORD, CANARY_WRONG, CANARY_QUERY, CANARY_JWT, admin.session, key, csrf]


def log_entries(env: AuthEnv) -> list[dict[str, Any]]:
    """Every line the process wrote, each parsed as one JSON object."""
    lines = [line for line in env.gw.logs().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]
    assert all(isinstance(e, dict) and {"ts", "level", "msg"} <= set(e) for e in entries)
    return entries


async def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, await r.text()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


async def test_no_canary_reaches_the_log(env: AuthEnv, canaries: list[str]) -> None:
    logs = env.gw.logs()
    assert "gateway.access" in logs  # the scenario was logged at all
    for canary in canaries:
        assert canary not in logs, canary
    assert CANARY_PASSWORD[7:] not in logs and canaries[5].split("_")[-1] not in logs
    assert "$argon2" not in logs  # nor a password hash (debug SQL traces quote parameters)


async def test_access_lines_carry_the_contract_fields(env: AuthEnv, canaries: list[str]) -> None:
    async with http_client() as http:
        _, body, _ = await echo(env, http, "/public/rid", headers={"X-Request-Id": "obs-rid-1"})
    assert upstream_headers(body)["x-request-id"] == "obs-rid-1"
    # The access line is written after the response went out: wait for it, bounded.
    deadline = asyncio.get_running_loop().time() + 10.0
    while True:
        access = [e for e in log_entries(env) if e.get("logger") == "gateway.access"]
        found = [e for e in access if e.get("request_id") == "obs-rid-1"]
        if found:
            break
        assert asyncio.get_running_loop().time() < deadline, "no access line for the request"
        await asyncio.sleep(0.05)
    line = found[0]
    assert line["route"] == "app" and line["status"] == 200 and line["action"] == "http.request"
    assert isinstance(line["duration_ms"], float) and line["msg"] == "GET /public/rid 200"
    authed = [e for e in access if e.get("user_id") and e.get("tenant_id")]
    assert authed, "proxied requests of a signed-in user name the user and tenant"
    denied = [e for e in access if e.get("reason") == "unauthenticated"]
    assert denied and denied[0]["status"] == 401


async def test_metrics_are_served_on_the_metrics_listener_only(
    env: AuthEnv, canaries: list[str]
) -> None:
    status, text = await scrape(env.gw.metrics_port)
    assert status == 200
    assert sample(text, "gateway_http_requests_total", route="app", status="200") >= 2
    assert sample(text, "gateway_http_request_duration_seconds_count", route="app") >= 2
    assert sample(text, "gateway_authz_decisions_total", result="allow", reason="policy") >= 2
    assert (
        sample(text, "gateway_authz_decisions_total", result="deny", reason="unauthenticated") >= 1
    )
    assert sample(text, "gateway_upstream_response_duration_seconds_count", route="app") >= 2
    assert sample(text, "gateway_changebus_connected_state", backend="memory") == 1
    assert not any(c in text for c in canaries)
    for path in ("/metrics", "/.gateway/metrics"):
        _, body = await scrape(env.gw.port, path)
        assert "gateway_http_requests_total" not in body


async def test_store_and_identity_metrics(env: AuthEnv, canaries: list[str]) -> None:
    _, text = await scrape(env.gw.metrics_port)
    assert sample(text, "gateway_identity_signups_total") >= 1
    assert sample(text, "gateway_identity_signin_failures_total") >= 1
    assert sample(text, "gateway_sessions_revocations_total", kind="signout") >= 1
    assert (
        sample(
            text,
            "gateway_store_operation_duration_seconds_count",
            port="sessions",
            backend="sqlite",
        )
        >= 1
    )


async def test_traceparent_passes_through_when_tracing_is_off(env: AuthEnv) -> None:
    async with http_client() as http:
        _, body, _ = await echo(env, http, "/public/t", headers={"traceparent": TRACEPARENT})
    assert upstream_headers(body)["traceparent"] == TRACEPARENT
    async with http_client() as http:
        bad = {"traceparent": f"00-{TRACE_ID}-0000000000000000-01", "tracestate": "a=b"}
        _, body, _ = await echo(env, http, "/public/t", headers=bad)
    assert "traceparent" not in upstream_headers(body)
    assert "tracestate" not in upstream_headers(body)


async def test_spans_are_exported_over_otlp_when_configured(tmp_path: Path) -> None:
    received: list[tuple[str, bytes]] = []

    async def collect(request: web.Request) -> web.Response:
        received.append((request.content_type, await request.read()))
        return web.Response(status=200)

    collector = web.Application()
    collector.router.add_post("/v1/traces", collect)
    runner = web.AppRunner(collector)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with run_echo_upstream() as upstream:
            tracing = {"otlp_endpoint": f"http://127.0.0.1:{port}"}
            config = base_config(upstream.url, tmp_path, tracing=tracing)
            async with run_gateway(tmp_path, config) as gw, http_client() as http:
                headers = {"traceparent": TRACEPARENT}
                async with http.get(f"{gw.url}/public/otlp", headers=headers) as resp:
                    seen = upstream_headers(await resp.json())["traceparent"]
        # The gateway flushed its spans on shutdown (the block above waited for its exit).
    finally:
        await runner.cleanup()
    assert seen.split("-")[1] == TRACE_ID and seen != TRACEPARENT
    assert received and received[0][0] == "application/x-protobuf"
    assert bytes.fromhex(TRACE_ID) in b"".join(body for _, body in received)
