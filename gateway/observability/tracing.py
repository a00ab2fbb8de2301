"""OpenTelemetry tracing: the request span, its children, and propagation upstream.

Guarantees:

* with no `tracing.otlp_endpoint` (and no test exporter) nothing is set up: no provider, no
  middleware, no client hooks, no spans; a well-formed inbound `traceparent` (and its
  `tracestate`) is still handed to the upstream unchanged (`continue_caller_trace`);
* when enabled, every request gets one SERVER span continuing the caller's W3C trace
  (`traceparent`/`tracestate` only: inbound `baggage` is never trusted), stages and store
  calls get child spans, and the upstream call is a CLIENT span (aiohttp client
  instrumentation) whose context is injected as `traceparent`, so the upstream continues
  the same trace;
* span names and attributes carry route templates, methods, status codes and ids only:
  never query strings, headers, cookies or credentials.

The aiohttp *server* instrumentation's middleware is not used: it records the query string
(redacting only four cloud-signature parameters) and reads module globals that only its
global `web.Application` patch sets. The middleware below follows the same conventions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDictProxy
from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from yarl import URL

from gateway.config.sections import TracingConfig

INSTRUMENTATION = "gateway"
_PROPAGATOR = TraceContextTextMapPropagator()


@dataclass(slots=True)
class TracingState:
    """The process's tracing switch: `tracer` is None while tracing is off."""

    tracer: trace.Tracer | None = None
    provider: TracerProvider | None = None


STATE = TracingState()


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a collector base URL (`…/v1/traces` appended once)."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


def build_provider(config: TracingConfig, exporter: SpanExporter | None = None) -> TracerProvider:
    """A provider sampling `sample_ratio` of new traces (following the caller's decision).

    `exporter` (tests) is flushed span by span; otherwise spans are batched to OTLP/HTTP.
    """
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        assert config.otlp_endpoint is not None
        processor: Any = BatchSpanProcessor(
            OTLPSpanExporter(endpoint=traces_url(config.otlp_endpoint))
        )
    else:
        processor = SimpleSpanProcessor(exporter)
    provider = TracerProvider(
        resource=Resource.create({"service.name": config.service_name}),
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
    )
    provider.add_span_processor(processor)
    return provider


def enable(provider: TracerProvider) -> None:
    """Turns tracing on for this process with `provider` (replacing an earlier one)."""
    STATE.provider = provider
    STATE.tracer = provider.get_tracer(INSTRUMENTATION)


def disable() -> None:
    """Turns tracing off, flushing and shutting down the provider that was in use."""
    provider, STATE.provider, STATE.tracer = STATE.provider, None, None
    if provider is not None:
        provider.shutdown()


def _upstream_url(url: URL) -> str:
    # SECURITY: the query string may carry tokens; spans record scheme, host and path only.
    return str(url.with_query(None).with_fragment(None))


_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
MAX_TRACESTATE = 512


def continue_caller_trace(inbound: Mapping[str, str], upstream: MutableMapping[str, str]) -> None:
    """With tracing off, hands the caller's W3C trace context to the upstream unchanged.

    The inbound copies were stripped with the other gateway-owned headers; only a
    well-formed `traceparent` (and then a bounded `tracestate`) is put back.
    """
    parent = inbound.get("traceparent")
    # SECURITY: a strict W3C shape only: no header or log injection through trace ids.
    if parent is None or _TRACEPARENT.fullmatch(parent) is None:
        return
    upstream["traceparent"] = parent
    state = inbound.get("tracestate")
    if state is not None and len(state) <= MAX_TRACESTATE and state.isprintable():
        upstream["tracestate"] = state


def client_trace_configs() -> list[aiohttp.TraceConfig]:
    """The upstream session's trace hooks: a CLIENT span per call and `traceparent` injected
    into the outgoing headers (replacing any inbound one); empty while tracing is off."""
    if STATE.provider is None:
        return []
    return [create_trace_config(url_filter=_upstream_url, tracer_provider=STATE.provider)]


class _HeaderGetter(Getter["CIMultiDictProxy[str]"]):
    """Reads propagation headers from an aiohttp request's headers."""

    def get(self, carrier: CIMultiDictProxy[str], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: CIMultiDictProxy[str]) -> list[str]:
        return list(carrier.keys())


_GETTER = _HeaderGetter()


def _span_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else ""
    return f"{request.method} {template}".rstrip()


@web.middleware
async def tracing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One SERVER span per request, child of the caller's `traceparent` when it sent one."""
    tracer = STATE.tracer
    if tracer is None:
        return await handler(request)
    # SECURITY: only W3C trace context is taken from the client; baggage is ignored.
    parent = _PROPAGATOR.extract(request.headers, getter=_GETTER)
    attributes = {
        "http.request.method": request.method,
        "http.route": _span_name(request).partition(" ")[2],
        "url.scheme": request.scheme,
    }
    with tracer.start_as_current_span(
        _span_name(request),
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes=attributes,
        record_exception=False,  # SECURITY: exception messages may quote secrets
    ) as span:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            span.set_attribute("http.response.status_code", exc.status)
            raise
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            raise
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            span.set_status(trace.StatusCode.ERROR)
        return response
