"""Per-request observation on the main listener: request metrics and the access log.

Guarantees: every request the main listener answers (proxied or a gateway endpoint) is
counted once in `gateway_http_requests_total` and timed in
`gateway_http_request_duration_seconds`, including handler failures (500) and clients that
went away (499); the access log writes one `gateway.access` line per request: always for
statuses ≥ 400, for the others with probability `logging.access_log_sample`. A line never
contains the query string, headers or bodies.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import trace

from gateway.observability import tracing
from gateway.observability.metrics import HTTP_DURATION, HTTP_REQUESTS
from gateway.observability.tally import (
    CounterTally,
    HistogramTally,
    counter_tally,
    histogram_tally,
)
from gateway.pipeline.reasons import Reason
from gateway.pipeline.scope import SCOPE_KEY, RequestScope

access_log = logging.getLogger("gateway.access")

REASON_KEY = web.RequestKey("gateway_deny_reason", Reason)
PROXY_TEMPLATE = "/{tail}"
"""The catch-all route's template: its requests are labelled by upstream name instead."""
UNMATCHED = "-"
MAX_LABEL_SETS = 10_000
_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
CLIENT_GONE = 499


@dataclass(slots=True)
class AccessLogPolicy:
    """Whether access lines are written, and which share of the non-error ones."""

    enabled: bool = True
    sample: float = 1.0

    def wanted(self, status: int) -> bool:
        """True when this request's line is to be written (errors always are)."""
        if not self.enabled:
            return False
        if status >= 400 or self.sample >= 1.0:
            return True
        return random.random() < self.sample  # noqa: S311 - sampling, not security


ACCESS = AccessLogPolicy()
_children: dict[tuple[str, int], tuple[CounterTally, HistogramTally]] = {}


def note_reason(request: web.Request, reason: Reason) -> None:
    """Records why the gateway refused or failed this request, for its log line and span."""
    request[REASON_KEY] = reason


def route_label(request: web.Request, scope: RequestScope | None) -> str:
    """The upstream name of a proxied request, else the endpoint's template (bounded)."""
    if scope is not None and scope.route is not None:
        return scope.route.name
    match_info = getattr(request, "match_info", None)  # none on the fast path (no router)
    if match_info is None:
        return UNMATCHED
    resource = match_info.route.resource
    template = resource.canonical if resource is not None else UNMATCHED
    return UNMATCHED if template == PROXY_TEMPLATE else template


def _metrics_for(route: str, status: int) -> tuple[CounterTally, HistogramTally]:
    """The tallies of (route, status)'s label children, bound once and reused."""
    found = _children.get((route, status))
    if found is None:
        found = (
            counter_tally(HTTP_REQUESTS.labels(route, str(status))),
            histogram_tally(HTTP_DURATION.labels(route, _STATUS_CLASS.get(status // 100, "other"))),
        )
        if len(_children) < MAX_LABEL_SETS:
            _children[(route, status)] = found
    return found


def _log_access(
    request: web.Request, scope: RequestScope | None, route: str, status: int, seconds: float
) -> None:
    principal = scope.principal if scope is not None else None
    reason = request.get(REASON_KEY)
    # SECURITY: the raw path without its query string: queries may carry tokens.
    path = request.raw_path.partition("?")[0]
    access_log.info(
        "%s %s %d",
        request.method,
        path,
        status,
        extra={
            "request_id": scope.request_id if scope is not None else None,
            "tenant_id": principal.tenant.id if principal is not None else None,
            "user_id": principal.id if principal is not None else None,
            "action": "http.request",
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "reason": reason.value if reason is not None else None,
        },
    )


def _annotate_span(scope: RequestScope | None, route: str, reason: Reason | None) -> None:
    """Adds the gateway's view (route, reason, request id) to the request's SERVER span."""
    span = trace.get_current_span()
    span.set_attribute("gateway.route", route)
    if reason is not None:
        span.set_attribute("gateway.reason", reason.value)
    if scope is not None:
        span.set_attribute("gateway.request_id", scope.request_id)


def record(request: web.Request, status: int, seconds: float) -> None:
    """Counts, times and (per the policy) logs one answered request."""
    scope = request.get(SCOPE_KEY)
    route = route_label(request, scope)
    counter, histogram = _metrics_for(route, status)
    counter.inc()
    histogram.observe(seconds)
    if tracing.STATE.tracer is not None:
        _annotate_span(scope, route, request.get(REASON_KEY))
    # The record (and its extra dict) is only built when a handler would take it.
    if ACCESS.wanted(status) and access_log.isEnabledFor(logging.INFO):
        _log_access(request, scope, route, status, seconds)


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Times the handler (streamed bodies included) and records the outcome."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CLIENT_GONE
        raise
    finally:
        record(request, status, time.perf_counter() - started)
