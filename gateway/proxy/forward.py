"""Forwarding a vetted request to its upstream, streaming bodies both ways.

Bodies are never buffered beyond a bounded window: the request body is pulled from the
client as the upstream accepts it, and the response body is written to the client as it
arrives, so memory stays flat for any body size. Transfer codings are re-framed per hop;
content codings pass through untouched. The upstream side is the gateway's own keep-alive
pool (`gateway.proxy.pool`, httptools' C parser), not aiohttp's client, which spent most of a
proxied request's CPU; WebSockets still use the aiohttp session (`websocket.py`).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client.metrics import Counter
from yarl import URL

from gateway.observability import tracing
from gateway.observability.http import note_reason
from gateway.observability.metrics import UPSTREAM_DURATION, UPSTREAM_ERRORS
from gateway.observability.tally import HistogramTally, histogram_tally
from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.responses import deny_response
from gateway.pipeline.scope import RequestScope
from gateway.proxy.conn import UpstreamConnection
from gateway.proxy.exchange import Exchange, encode_head, request_framing
from gateway.proxy.headers import response_headers
from gateway.proxy.pool import Origin, UpstreamPool
from gateway.proxy.routes import Route

CHUNK = 64 * 1024
NO_BODY_STATUSES = frozenset({204, 304})
_PROPAGATOR = TraceContextTextMapPropagator()  # W3C trace context only: never baggage


class BodyTooLarge(Exception):
    """The streamed request body passed the route's byte limit."""


def upstream_url(route: Route, path: str, query: str) -> URL:
    """The upstream target: the route's base path joined with the normalized request path."""
    target = f"{route.upstream_prefix}{path}" + (f"?{query}" if query else "")
    # SECURITY: encoded=True keeps the normalized path and the raw query byte for byte;
    # re-encoding or decoding here would let the upstream see a path the policy did not.
    return URL(target, encoded=True)


class LimitedBody:
    """The request body as a stream that stops with BodyTooLarge past `limit` bytes.

    The client library may wrap the exception it raises, so `exceeded` records the fact
    for the forwarder to answer 413 rather than 502.
    """

    def __init__(self, content: aiohttp.StreamReader, limit: int) -> None:
        self.content = content
        self.limit = limit
        self.exceeded = False

    async def stream(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self.content.iter_chunked(CHUNK):
            seen += len(chunk)
            if seen > self.limit:
                self.exceeded = True
                raise BodyTooLarge
            yield chunk


class UpstreamMetrics:
    """Per-route upstream latency and error counters, label children bound on first use."""

    KINDS = ("unreachable", "timeout", "truncated")

    def __init__(self) -> None:
        self._routes: dict[str, tuple[HistogramTally, dict[str, Counter]]] = {}

    def of(self, route: str) -> tuple[HistogramTally, dict[str, Counter]]:
        """The route's latency histogram (tallied) and its error counters by kind."""
        found = self._routes.get(route)
        if found is None:
            errors = {kind: UPSTREAM_ERRORS.labels(route, kind) for kind in self.KINDS}
            latency = histogram_tally(UPSTREAM_DURATION.labels(route))
            found = self._routes[route] = (latency, errors)
        return found


class PoolConnector(aiohttp.TCPConnector):
    """The WebSocket session's connector; closing it also closes the upstream pool, so the
    pool ends with the session whoever owns it."""

    def __init__(self, pool: UpstreamPool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.upstream_pool = pool

    async def close(self, *, abort_ssl: bool = False) -> None:
        self.upstream_pool.close()
        await super().close(abort_ssl=abort_ssl)


class Forwarder:
    """Forwards one request at a time through the keep-alive upstream pool.

    `session` (aiohttp) serves WebSocket tunnels; the pool is the one opened with it by
    `open_upstream_session`, else a new one (closed by `close()`).
    """

    def __init__(self, session: aiohttp.ClientSession, pool: UpstreamPool | None = None) -> None:
        self.session = session
        found = getattr(session.connector, "upstream_pool", None)
        self.pool: UpstreamPool = pool or found or UpstreamPool()
        self.metrics = UpstreamMetrics()
        self._targets: dict[str, tuple[Origin, str, str]] = {}

    def close(self) -> None:
        """Closes every upstream connection of the pool."""
        self.pool.close()

    def _target(self, route: Route) -> tuple[Origin, str, str]:
        """(origin, base path, Host value) of a route's upstream, computed once."""
        found = self._targets.get(route.upstream_prefix)
        if found is None:
            origin = Origin.of(route.base_url)
            base = route.base_url.raw_path.rstrip("/")
            found = self._targets[route.upstream_prefix] = (origin, base, origin.host_header)
        return found

    async def forward(self, scope: RequestScope) -> web.StreamResponse:
        """Sends the request upstream and streams the answer back; errors map to 502/504/413.

        Traced as a `upstream <route>` span around a CLIENT span whose context is sent
        upstream as `traceparent`.
        """
        tracer = tracing.STATE.tracer
        if tracer is None:
            return await self._forward(scope)
        assert scope.route is not None
        with (
            tracer.start_as_current_span(
                f"upstream {scope.route.name}",
                attributes={"gateway.route": scope.route.name},
                record_exception=False,
            ),
            tracer.start_as_current_span(
                scope.method, kind=SpanKind.CLIENT, attributes={"http.request.method": scope.method}
            ) as span,
        ):
            _PROPAGATOR.inject(scope.upstream_headers)
            response = await self._forward(scope)
            span.set_attribute("http.response.status_code", response.status)
            return response

    def _head(
        self, scope: RequestScope, route: Route, target: tuple[Origin, str, str], has_body: bool
    ) -> tuple[bytes, int | None]:
        """The encoded request head and the body's declared length (`target`: `_target`'s)."""
        request = scope.request
        _, base, default_host = target
        host: str | None = default_host
        headers: CIMultiDict[str] = scope.upstream_headers
        if route.preserve_host:
            headers["Host"] = request.host
            host = None
        if tracing.STATE.tracer is None:  # with tracing on, the CLIENT span injects its own
            tracing.continue_caller_trace(request.headers, headers)
        framing, length = request_framing(request.method, headers, has_body)
        path = f"{base}{scope.path}?{scope.query}" if scope.query else f"{base}{scope.path}"
        return encode_head(request.method, path, host, headers, framing), length

    async def _forward(self, scope: RequestScope) -> web.StreamResponse:
        opened = await self.open_exchange(scope)
        if isinstance(opened, web.StreamResponse):
            return opened
        exchange, conn = opened
        route = scope.route
        assert route is not None
        errors = self.metrics.of(route.name)[1]
        return await relay(scope.request, exchange, conn, scope.response_headers, errors, route)

    async def open_exchange(
        self, scope: RequestScope
    ) -> tuple[Exchange, UpstreamConnection] | web.StreamResponse:
        """Sends the request upstream; the exchange once the response head arrived, or the
        refusal (502/504/413) when it could not be sent or answered."""
        route = scope.route
        assert route is not None
        request = scope.request
        has_body = request.body_exists
        target = self._target(route)
        try:
            head, length = self._head(scope, route, target, has_body)
        except ValueError:  # HeaderInjection, or a Content-Length that is not a number
            return self._refuse(request, Reason.UPSTREAM_UNREACHABLE)
        body = LimitedBody(request.content, route.max_body_bytes) if has_body else None
        latency, errors = self.metrics.of(route.name)
        exchange = Exchange(self.pool, target[0])
        started = time.perf_counter()
        try:
            conn = await exchange.start(
                head,
                request.method,
                body.stream() if body is not None else None,
                length,
                (route.connect_timeout, route.read_timeout),
            )
        except (BodyTooLarge, TimeoutError, OSError, aiohttp.ClientError) as exc:
            exchange.abort()
            if body is not None and body.exceeded:
                return self._refuse(request, Reason.BODY_TOO_LARGE)
            if isinstance(exc, TimeoutError):
                errors["timeout"].inc()
                return self._refuse(request, Reason.UPSTREAM_TIMEOUT)
            errors["unreachable"].inc()
            return self._refuse(request, Reason.UPSTREAM_UNREACHABLE)
        except BaseException:
            exchange.abort()
            raise
        latency.observe(time.perf_counter() - started)
        return exchange, conn

    @staticmethod
    def _refuse(request: web.Request, reason: Reason) -> web.StreamResponse:
        note_reason(request, reason)
        response = deny_response(request, Deny(reason))
        if reason is Reason.BODY_TOO_LARGE:
            response.force_close()  # the rest of the body is never read
        return response


async def relay(
    request: web.Request,
    exchange: Exchange,
    conn: UpstreamConnection,
    extra: list[tuple[str, str]],
    errors: dict[str, Counter],
    route: Route,
) -> web.StreamResponse:
    """Writes the upstream's response to the client: at once when already complete, else
    streamed; a body cut short aborts the client connection (never looks complete)."""
    headers = response_headers(conn.headers)
    for name, value in extra:
        headers.add(name, value)
    response = web.StreamResponse(status=conn.status, reason=conn.reason or None, headers=headers)
    if request.method == "HEAD" or conn.status in NO_BODY_STATUSES:
        exchange.finish()
        await response.prepare(request)
        return response
    if "Content-Length" not in headers and request.version >= (1, 1):
        response.enable_chunked_encoding()
    if conn.complete:
        body = conn.take_body()
        exchange.finish()
        await response.prepare(request)
        await response.write_eof(body)
        return response
    try:
        await response.prepare(request)
        while chunk := await conn.read_chunk(route.read_timeout):
            await response.write(chunk)
    except (TimeoutError, OSError, aiohttp.ClientError):
        # SECURITY: a truncated body must not look complete: drop the client connection.
        errors["truncated"].inc()
        exchange.abort()
        if request.transport is not None:
            request.transport.abort()
        return response
    except BaseException:
        exchange.abort()
        raise
    exchange.finish()
    await response.write_eof()
    return response


async def open_upstream_session(
    limit_per_host: int = 256, ssl_by_origin: Mapping[Origin, ssl.SSLContext] | None = None
) -> aiohttp.ClientSession:
    """The aiohttp session for WebSocket tunnels, owning the HTTP keep-alive pool too.

    With tracing on, each WebSocket handshake is a CLIENT span carrying its `traceparent`.
    """
    connector = PoolConnector(
        UpstreamPool(max_idle=limit_per_host, ssl_by_origin=ssl_by_origin),
        limit=0,
        limit_per_host=limit_per_host,
        keepalive_timeout=30,
        ttl_dns_cache=60,
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        trace_configs=tracing.client_trace_configs(),
    )
