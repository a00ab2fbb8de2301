"""Forwarding a vetted request to its upstream, streaming bodies both ways.

Bodies are never buffered: the request body is pulled from the client as the upstream
accepts it, and the response body is written to the client as it arrives, so memory stays
flat for any body size. Transfer codings are re-framed per hop; content codings pass
through untouched (`auto_decompress=False`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client.metrics import Counter, Histogram
from yarl import URL

from gateway.observability import tracing
from gateway.observability.http import note_reason
from gateway.observability.metrics import UPSTREAM_DURATION, UPSTREAM_ERRORS
from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.responses import deny_response
from gateway.pipeline.scope import RequestScope
from gateway.proxy.headers import build_response_headers
from gateway.proxy.routes import Route

CHUNK = 64 * 1024
NO_BODY_STATUSES = frozenset({204, 304})
# Headers the client session would otherwise add or that only describe this hop.
SKIP_AUTO_HEADERS = frozenset({"User-Agent", "Accept-Encoding", "Accept", "Content-Type"})


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
        self._routes: dict[str, tuple[Histogram, dict[str, Counter]]] = {}

    def of(self, route: str) -> tuple[Histogram, dict[str, Counter]]:
        """The route's latency histogram and its error counters by kind."""
        found = self._routes.get(route)
        if found is None:
            errors = {kind: UPSTREAM_ERRORS.labels(route, kind) for kind in self.KINDS}
            found = self._routes[route] = (UPSTREAM_DURATION.labels(route), errors)
        return found


class Forwarder:
    """Owns the pooled upstream client and forwards one request at a time through it."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.metrics = UpstreamMetrics()

    async def forward(self, scope: RequestScope) -> web.StreamResponse:
        """Sends the request upstream and streams the answer back; errors map to 502/504/413.

        Traced as a `upstream <route>` span around the aiohttp client's CLIENT span.
        """
        tracer = tracing.STATE.tracer
        if tracer is None:
            return await self._forward(scope)
        assert scope.route is not None
        with tracer.start_as_current_span(
            f"upstream {scope.route.name}",
            attributes={"gateway.route": scope.route.name},
            record_exception=False,
        ):
            return await self._forward(scope)

    async def _forward(self, scope: RequestScope) -> web.StreamResponse:
        route = scope.route
        assert route is not None
        request = scope.request
        body = LimitedBody(request.content, route.max_body_bytes) if request.body_exists else None
        latency, errors = self.metrics.of(route.name)
        started = time.perf_counter()
        try:
            async with self._send(scope, route, body) as upstream:
                latency.observe(time.perf_counter() - started)
                return await self._relay(request, upstream, scope.response_headers, errors)
        except (BodyTooLarge, TimeoutError, aiohttp.ClientError, OSError) as exc:
            if body is not None and body.exceeded:
                return self._refuse(request, Reason.BODY_TOO_LARGE)
            if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
                errors["timeout"].inc()
                return self._refuse(request, Reason.UPSTREAM_TIMEOUT)
            errors["unreachable"].inc()
            return self._refuse(request, Reason.UPSTREAM_UNREACHABLE)

    @staticmethod
    def _refuse(request: web.Request, reason: Reason) -> web.StreamResponse:
        note_reason(request, reason)
        response = deny_response(request, Deny(reason))
        if reason is Reason.BODY_TOO_LARGE:
            response.force_close()  # the rest of the body is never read
        return response

    def _send(
        self, scope: RequestScope, route: Route, body: LimitedBody | None
    ) -> aiohttp.client._RequestContextManager:
        request = scope.request
        headers: CIMultiDict[str] = scope.upstream_headers
        if route.preserve_host:
            headers["Host"] = request.host
        if tracing.STATE.tracer is None:  # with tracing on, the client span injects its own
            tracing.continue_caller_trace(request.headers, headers)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=route.connect_timeout, sock_read=route.read_timeout
        )
        return self.session.request(
            request.method,
            upstream_url(route, scope.path, scope.query),
            headers=headers,
            data=body.stream() if body is not None else None,
            allow_redirects=False,
            timeout=timeout,
            skip_auto_headers=SKIP_AUTO_HEADERS,
            compress=None,
        )

    @staticmethod
    async def _relay(
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        extra: list[tuple[str, str]],
        errors: dict[str, Counter],
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        response.headers.update(build_response_headers(upstream.headers))
        for name, value in extra:
            response.headers.add(name, value)
        bodyless = request.method == "HEAD" or upstream.status in NO_BODY_STATUSES
        if not bodyless and "Content-Length" not in response.headers and request.version >= (1, 1):
            response.enable_chunked_encoding()
        await response.prepare(request)
        if bodyless:
            return response
        try:
            async for chunk in upstream.content.iter_chunked(CHUNK):
                await response.write(chunk)
        except (aiohttp.ClientError, TimeoutError, OSError):
            # SECURITY: a truncated body must not look complete: drop the client connection.
            errors["truncated"].inc()
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response


async def open_upstream_session(limit_per_host: int = 256) -> aiohttp.ClientSession:
    """A keep-alive pooled client for upstreams that leaves bodies and cookies untouched.

    With tracing on, each call is a CLIENT span and carries its `traceparent` upstream.
    """
    connector = aiohttp.TCPConnector(
        limit=0, limit_per_host=limit_per_host, keepalive_timeout=30, ttl_dns_cache=60
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        trace_configs=tracing.client_trace_configs(),
    )
