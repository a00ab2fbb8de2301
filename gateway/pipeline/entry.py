"""The catch-all handler: build the scope, run the chain, forward or deny."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from gateway.observability import tracing
from gateway.observability.decisions import DECISIONS
from gateway.observability.http import note_reason
from gateway.pipeline.reasons import Deny
from gateway.pipeline.responses import deny_response
from gateway.pipeline.scope import SCOPE_KEY, RequestScope
from gateway.pipeline.stages.base import Stage
from gateway.proxy.clientip import TrustedProxies, resolve_client_ip
from gateway.proxy.forward import Forwarder
from gateway.proxy.headers import new_request_id, valid_request_id
from gateway.proxy.websocket import tunnel_websocket

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ScopeFactory:
    """Creates a request's scope: its id and the client address, trusted proxies honoured."""

    def __init__(self, trusted: TrustedProxies, request_id_header: str) -> None:
        self.trusted = trusted
        self.request_id_header = request_id_header

    def create(self, request: web.Request) -> RequestScope:
        inbound_id = request.headers.get(self.request_id_header)
        # SECURITY: a client-chosen request id is kept only when well-formed (log injection).
        request_id = inbound_id if valid_request_id(inbound_id) else new_request_id()
        assert request_id is not None
        headers = request.headers
        client_ip, chain = resolve_client_ip(
            request.remote,
            headers.getall("X-Forwarded-For", []),
            headers.getall("Forwarded", []),
            self.trusted,
        )
        scope = RequestScope(
            request=request,
            request_id=request_id,
            started=time.monotonic(),
            method=request.method,
            host=request.host,
            target=request.raw_path,
        )
        scope.client_ip = client_ip
        scope.forwarded_chain = chain
        request[SCOPE_KEY] = scope
        return scope


STAGE_SPANS = {"LoadPrincipal": "gateway.session_lookup", "Authorize": "gateway.decision"}
"""The stages traced as child spans of the request span (by stage name)."""

Step = tuple[Stage, str | None]


def traced_steps(chain: tuple[Stage, ...]) -> tuple[Step, ...]:
    """Each stage with the span name it runs under (None: not traced), computed once."""
    return tuple((stage, STAGE_SPANS.get(getattr(stage, "name", ""))) for stage in chain)


async def run_chain(steps: tuple[Step, ...], scope: RequestScope) -> Deny | None:
    """Runs the stages in order until one denies; traced stages get a child span."""
    tracer = tracing.STATE.tracer
    for stage, span_name in steps:
        if span_name is None or tracer is None:
            deny = await stage(scope)
        else:
            with tracer.start_as_current_span(span_name, record_exception=False) as span:
                deny = await stage(scope)
                span.set_attribute("gateway.denied", deny is not None)
        if deny is not None:
            return deny
    return None


def denied(factory: ScopeFactory, scope: RequestScope, deny: Deny) -> web.StreamResponse:
    """The denial's response, with the request id and the headers every response carries."""
    note_reason(scope.request, deny.reason)
    DECISIONS.denied(deny.reason)
    response = deny_response(scope.request, deny, scope.target)
    response.headers[factory.request_id_header] = scope.request_id
    for name, value in scope.response_headers:
        response.headers.add(name, value)
    return response


def make_proxy_handler(
    factory: ScopeFactory,
    chain: tuple[Stage, ...],
    forwarder: Forwarder,
    session: aiohttp.ClientSession,
) -> Handler:
    """The handler every non-gateway path reaches: stages in order, then the forward."""
    steps = traced_steps(chain)

    async def handle(request: web.Request) -> web.StreamResponse:
        scope = factory.create(request)
        deny = await run_chain(steps, scope)
        if deny is not None:
            return denied(factory, scope, deny)
        DECISIONS.allowed(scope.public)
        if scope.websocket:
            return await tunnel_websocket(scope, session)
        return await forwarder.forward(scope)

    return handle
