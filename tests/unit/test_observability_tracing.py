"""Tracing in-process: the request span and its children reach an in-memory exporter, and
the upstream continues the caller's trace through `traceparent`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import build_app
from gateway.config.loader import load_config
from gateway.observability import tracing
from gateway.observability.stores import instrument
from tests.support.gateway_proc import base_config
from tests.support.upstream import EchoUpstream, run_echo_upstream

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@dataclass
class Traced:
    client: TestClient[Any, Any]
    exporter: InMemorySpanExporter
    upstream: EchoUpstream


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    async with run_echo_upstream() as upstream:
        raw = base_config(upstream.url, tmp_path, rate_limits={"defaults": False})
        config = load_config(env={}, overrides=raw)
        app = build_app(config, span_exporter=exporter)
        async with TestClient(TestServer(app)) as client:
            yield Traced(client, exporter, upstream)
    assert tracing.STATE.tracer is None  # shut down with the app


def upstream_traceparent(body: dict[str, Any]) -> str:
    return next(v for k, v in body["headers"] if k.lower() == "traceparent")


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


async def test_request_span_children_and_upstream_traceparent(traced: Traced) -> None:
    resp = await traced.client.get("/public/x?token=secret-q", headers={"traceparent": TRACEPARENT})
    body = json.loads(await resp.read())
    assert resp.status == 200
    spans = by_name(traced.exporter.get_finished_spans())
    server = spans["GET /{tail}"]
    assert server.kind is trace.SpanKind.SERVER
    assert server.context is not None and server.parent is not None
    assert f"{server.context.trace_id:032x}" == CALLER_TRACE
    assert f"{server.parent.span_id:016x}" == CALLER_SPAN
    for name in ("gateway.session_lookup", "gateway.decision", "upstream app"):
        child = spans[name]
        assert child.parent is not None and child.parent.span_id == server.context.span_id
    upstream_span_id = spans["upstream app"].context.span_id  # type: ignore[union-attr]
    # Background store calls (the policy watcher) are CLIENT spans too: take the upstream's.
    client_span = next(
        s
        for s in traced.exporter.get_finished_spans()
        if s.kind is trace.SpanKind.CLIENT
        and s.parent is not None
        and s.parent.span_id == upstream_span_id
    )
    version, trace_id, parent_id, _flags = upstream_traceparent(body).split("-")
    assert (version, trace_id) == ("00", CALLER_TRACE)
    assert parent_id == f"{client_span.context.span_id:016x}"  # type: ignore[union-attr]
    assert server.attributes is not None and server.attributes["gateway.route"] == "app"


async def test_span_attributes_carry_no_query_or_credentials(traced: Traced) -> None:
    headers = {"Authorization": "Bearer canary-bearer-123", "Cookie": "gw_session=canary-cookie"}
    resp = await traced.client.get("/public/y?token=canary-query", headers=headers)
    assert resp.status == 200
    dumped = " ".join(
        f"{span.name} {dict(span.attributes or {})}"
        for span in traced.exporter.get_finished_spans()
    )
    for canary in ("canary-query", "canary-bearer", "canary-cookie"):
        assert canary not in dumped


async def test_a_new_trace_starts_without_a_caller_traceparent(traced: Traced) -> None:
    resp = await traced.client.get("/public/z")
    body = json.loads(await resp.read())
    spans = by_name(traced.exporter.get_finished_spans())
    server = spans["GET /{tail}"]
    assert server.parent is None
    assert upstream_traceparent(body).split("-")[1] == f"{server.context.trace_id:032x}"  # type: ignore[union-attr]


async def test_gateway_endpoints_get_a_span_too(traced: Traced) -> None:
    resp = await traced.client.get("/.gateway/healthz")
    assert resp.status == 200
    assert "GET /.gateway/healthz" in by_name(traced.exporter.get_finished_spans())


class _Store:
    async def get(self, key: str) -> str:
        return key


async def test_store_calls_are_child_spans(traced: Traced) -> None:
    store = instrument(_Store(), "sessions", "sqlite")
    tracer = tracing.STATE.tracer
    assert tracer is not None
    with tracer.start_as_current_span("parent"):
        assert await store.get("k") == "k"
    spans = by_name(traced.exporter.get_finished_spans())
    child = spans["store sessions.get"]
    assert child.parent is not None
    assert child.parent.span_id == spans["parent"].context.span_id  # type: ignore[union-attr]
    assert child.attributes is not None and child.attributes["db.system"] == "sqlite"


def test_tracing_is_off_without_an_endpoint() -> None:
    assert tracing.STATE.tracer is None
    assert tracing.client_trace_configs() == []
