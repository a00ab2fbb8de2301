"""Request metrics and the access log (middleware), store instrumentation, decision counters."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from gateway.audit.events import Actor, AuditEvent
from gateway.config.loader import load_config
from gateway.observability.decisions import DECISIONS
from gateway.observability.http import ACCESS, observe_middleware
from gateway.observability.metrics import BUS_CONNECTED
from gateway.observability.setup import watch_bus
from gateway.observability.stores import InstrumentedStore, instrument
from gateway.pipeline.reasons import Reason
from gateway.storage.factory import open_stores
from gateway.storage.memory.bus import MemoryChangeBus
from gateway.storage.ports import BUS_DISCONNECTED, BUS_RESYNC, StoreUnavailable
from gateway.storage.state import open_state_dir


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def sampling() -> Iterator[None]:
    saved = (ACCESS.enabled, ACCESS.sample)
    yield
    ACCESS.enabled, ACCESS.sample = saved


async def ok(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def missing(_request: web.Request) -> web.Response:
    raise web.HTTPNotFound()


async def broken(_request: web.Request) -> web.Response:
    raise RuntimeError("password=boom")


async def client_for() -> TestClient[web.Request, web.Application]:
    app = web.Application(middlewares=[observe_middleware])
    app.router.add_get("/.gateway/test-ok", ok)
    app.router.add_get("/.gateway/test-missing", missing)
    app.router.add_get("/.gateway/test-broken", broken)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_requests_are_counted_by_route_template_and_status(sampling: None) -> None:
    route = "/.gateway/test-ok"
    before = value("gateway_http_requests_total", route=route, status="200")
    client = await client_for()
    try:
        for path in (route, "/.gateway/test-missing", "/.gateway/test-broken"):
            await (await client.get(path)).release()
    finally:
        await client.close()
    assert value("gateway_http_requests_total", route=route, status="200") == before + 1
    assert value("gateway_http_requests_total", route="/.gateway/test-missing", status="404") >= 1
    assert value("gateway_http_requests_total", route="/.gateway/test-broken", status="500") >= 1
    assert (
        value("gateway_http_request_duration_seconds_count", route=route, status_class="2xx")
        == before + 1
    )


async def test_access_log_samples_successes_but_keeps_errors(
    sampling: None, caplog: pytest.LogCaptureFixture
) -> None:
    ACCESS.sample = 0.0
    client = await client_for()
    try:
        with caplog.at_level(logging.INFO, logger="gateway.access"):
            await (await client.get("/.gateway/test-ok?token=q-canary")).release()
            await (await client.get("/.gateway/test-missing")).release()
    finally:
        await client.close()
    lines = [r for r in caplog.records if r.name == "gateway.access"]
    assert [r.getMessage() for r in lines] == ["GET /.gateway/test-missing 404"]
    assert lines[0].status == 404  # type: ignore[attr-defined]
    assert lines[0].route == "/.gateway/test-missing"  # type: ignore[attr-defined]


def test_access_log_policy() -> None:
    policy = type(ACCESS)(enabled=True, sample=0.0)
    assert not policy.wanted(200) and policy.wanted(403) and policy.wanted(502)
    assert not type(ACCESS)(enabled=False).wanted(500)


class FakeStore:
    def __init__(self) -> None:
        self.name = "fake"

    async def get(self, key: str) -> str:
        return key

    async def fail(self) -> None:
        raise StoreUnavailable("postgresql://u:pw@db failed")

    async def signup(self, event: AuditEvent) -> None:
        return None

    async def append_audit(self, event: AuditEvent) -> None:
        return None

    async def revoke_all_for_user(self, user_id: str, audit: AuditEvent) -> list[str]:
        return ["s_1", "s_2"]


async def test_store_calls_are_timed_and_unavailability_counted() -> None:
    labels = {"port": "identity", "backend": "sqlite"}
    store = instrument(FakeStore(), "identity", "sqlite")
    before = value("gateway_store_errors_total", operation="fail", **labels)
    assert await store.get("k") == "k"
    assert store.name == "fake"
    with pytest.raises(StoreUnavailable):
        await store.fail()
    assert value("gateway_store_errors_total", operation="fail", **labels) == before + 1
    assert value("gateway_store_operation_duration_seconds_count", operation="get", **labels) >= 1


async def test_audited_changes_drive_identity_and_session_counters() -> None:
    store = instrument(FakeStore(), "identity", "sqlite")
    user = Actor("user", "u_1")
    signups = value("gateway_identity_signups_total")
    failures = value("gateway_identity_signin_failures_total", reason="bad-password")
    revoked = value("gateway_sessions_revocations_total", kind="revoke_user")
    await store.signup(AuditEvent("auth.signup", user))
    await store.append_audit(
        AuditEvent("auth.signin", Actor("anonymous"), "failure", details={"reason": "bad-password"})
    )
    await store.revoke_all_for_user("u_1", audit=AuditEvent("session.revoke_user", user))
    assert value("gateway_identity_signups_total") == signups + 1
    assert value("gateway_identity_signin_failures_total", reason="bad-password") == failures + 1
    assert value("gateway_sessions_revocations_total", kind="revoke_user") == revoked + 2


def test_decisions_and_rate_limits_are_counted() -> None:
    denied = value("gateway_authz_decisions_total", result="deny", reason="rate-limited")
    limited = value("gateway_ratelimit_limited_requests_total", scope="proxy")
    public = value("gateway_authz_decisions_total", result="allow", reason="public")
    DECISIONS.denied(Reason.RATE_LIMITED)
    DECISIONS.allowed(public=True)
    assert value("gateway_authz_decisions_total", result="deny", reason="rate-limited") == (
        denied + 1
    )
    assert value("gateway_ratelimit_limited_requests_total", scope="proxy") == limited + 1
    assert value("gateway_authz_decisions_total", result="allow", reason="public") == public + 1


class FlakyBus(MemoryChangeBus):
    connected = True


async def test_change_bus_state_gauge_follows_the_bus() -> None:
    bus = FlakyBus()
    unsubscribe = watch_bus(bus)
    assert value("gateway_changebus_connected_state", backend="redis") == 1
    await bus.publish(BUS_DISCONNECTED, {})
    assert value("gateway_changebus_connected_state", backend="redis") == 0
    await bus.publish(BUS_RESYNC, {})
    assert value("gateway_changebus_connected_state", backend="redis") == 1
    unsubscribe()
    watch_bus(MemoryChangeBus())()
    assert BUS_CONNECTED.labels("memory")._value.get() == 1


async def test_open_stores_yields_instrumented_stores(tmp_path: Path) -> None:
    config = load_config(env={}, overrides={"state_dir": str(tmp_path / "state")})
    async with open_stores(config, open_state_dir(config.state_dir)) as observed:
        # open_stores hands out an instrumented copy; it closes the plain adapters itself.
        assert isinstance(observed.sessions, InstrumentedStore)
        assert isinstance(observed.identity, InstrumentedStore)
        before = value(
            "gateway_store_operation_duration_seconds_count",
            port="sessions", backend="sqlite", operation="get",
        )  # fmt: skip
        assert await observed.sessions.get("s_missing") is None
        after = value(
            "gateway_store_operation_duration_seconds_count",
            port="sessions", backend="sqlite", operation="get",
        )  # fmt: skip
        assert after == before + 1
