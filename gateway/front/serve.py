"""Serving one fast-path request: the proxy chain, then the upstream, on the raw socket.

The same stages, denial responses, upstream pool and metrics as the aiohttp path
(`gateway.pipeline.entry`); only the request object (`FastRequest`) and the writing of the
response (`respond.py`) differ.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

import aiohttp
from aiohttp import web
from prometheus_client.metrics import Counter

from gateway.front.request import FastRequest
from gateway.front.respond import LAST_CHUNK, NO_BODY_STATUSES, Sink, encode_head, write_complete
from gateway.observability.decisions import DECISIONS
from gateway.observability.http import record
from gateway.pipeline.entry import ScopeFactory, Step, denied, run_chain, traced_steps
from gateway.pipeline.responses import json_error
from gateway.pipeline.scope import RequestScope
from gateway.pipeline.stages.base import Stage
from gateway.proxy.forward import Forwarder
from gateway.proxy.headers import response_pairs
from gateway.tls import HSTS_HEADER

if TYPE_CHECKING:
    from gateway.proxy.conn import UpstreamConnection
    from gateway.proxy.exchange import Exchange

log = logging.getLogger("gateway.server")
VerifyHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HSTS_LOWER = HSTS_HEADER.lower()


class FastPath:
    """Answers fast-path requests; `serve` returns whether the connection stays open."""

    def __init__(
        self,
        factory: ScopeFactory,
        chain: tuple[Stage, ...],
        forwarder: Forwarder,
        hsts: str | None = None,
        verify_handler: VerifyHandler | None = None,
    ) -> None:
        self.factory = factory
        self.steps: tuple[Step, ...] = traced_steps(chain)
        self.forwarder = forwarder
        self.hsts = hsts
        self.verify_handler = verify_handler

    async def verify(self, request: FastRequest, sink: Sink, keep_alive: bool) -> bool:
        """`GET|HEAD /.gateway/verify` (forward-auth): the same handler as on the aiohttp
        path, its answer written here; never raises (a failure answers 500)."""
        started = time.perf_counter()
        status = 500
        try:
            assert self.verify_handler is not None
            response = await self.verify_handler(cast(web.Request, request))
            status = response.status
            return self._complete(sink, request, cast(web.Response, response), keep_alive)
        except Exception as exc:
            if not sink.started:
                status = 500
            return self._failed(sink, request, exc)
        finally:
            record(cast(web.Request, request), status, time.perf_counter() - started)

    def _failed(self, sink: Sink, request: FastRequest, exc: Exception) -> bool:
        """After an unexpected error: 500 when nothing was written yet, else the connection
        is dropped; the connection is never reused."""
        # SECURITY: the exception type only; messages may quote request data.
        log.error("unhandled error: %s", type(exc).__name__)
        if not sink.started:
            error = json_error(500, "internal-error", "internal error")
            write_complete(sink, request.version, error, keep_alive=False, head_only=False)
        else:
            sink.abort()
        return False

    async def serve(self, request: FastRequest, sink: Sink, keep_alive: bool) -> bool:
        """Runs the chain and writes the answer; never raises (a failure answers 500)."""
        started = time.perf_counter()
        status = 500
        try:
            # The chain reads only the part of web.Request that FastRequest provides.
            scope = self.factory.create(cast(web.Request, request))
            deny = await run_chain(self.steps, scope)
            if deny is not None:
                response = denied(self.factory, scope, deny)
                status = response.status
                return self._complete(sink, request, cast(web.Response, response), keep_alive)
            DECISIONS.allowed(scope.public)
            opened = await self.forwarder.open_exchange(scope)
            # A refusal is a response, an exchange a tuple (a tuple check skips the ABC's).
            if not isinstance(opened, tuple):
                status = opened.status
                return self._complete(sink, request, cast(web.Response, opened), keep_alive)
            status = opened[1].status
            try:
                return await self._relay(sink, request, scope, opened, keep_alive)
            except BaseException:
                opened[0].abort()  # a no-op once the exchange finished
                raise
        except Exception as exc:
            if not sink.started:
                status = 500
            return self._failed(sink, request, exc)
        finally:
            record(cast(web.Request, request), status, time.perf_counter() - started)

    def _complete(
        self, sink: Sink, request: FastRequest, response: web.Response, keep_alive: bool
    ) -> bool:
        if self.hsts is not None:
            response.headers.setdefault(HSTS_HEADER, self.hsts)
        head_only = request.method == "HEAD"
        return write_complete(
            sink, request.version, response, keep_alive=keep_alive, head_only=head_only
        )

    async def _relay(
        self,
        sink: Sink,
        request: FastRequest,
        scope: RequestScope,
        opened: tuple[Exchange, UpstreamConnection],
        keep_alive: bool,
    ) -> bool:
        """Writes the upstream's answer: at once when complete, else streamed."""
        exchange, conn = opened
        headers = response_pairs(conn.headers)
        headers.extend(scope.response_headers)
        if self.hsts is not None and not any(n.lower() == HSTS_LOWER for n, _ in headers):
            headers.append((HSTS_HEADER, self.hsts))
        if request.method == "HEAD" or conn.status in NO_BODY_STATUSES:
            exchange.finish()
            sink.write(self._head(request, conn, headers, keep_alive))
            return keep_alive
        has_length = any(n.lower() == "content-length" for n, _ in headers)
        if conn.complete:
            body = conn.take_body()
            exchange.finish()
            if not has_length:
                headers.append(("Content-Length", str(len(body))))
            sink.write(self._head(request, conn, headers, keep_alive) + body)
            return keep_alive
        chunked = not has_length and request.version >= (1, 1)
        keep_alive = keep_alive and (has_length or chunked)
        return await self._stream(sink, scope, exchange, conn, headers, keep_alive, chunked)

    @staticmethod
    def _head(
        request: FastRequest,
        conn: UpstreamConnection,
        headers: list[tuple[str, str]],
        keep_alive: bool,
        chunked: bool = False,
    ) -> bytes:
        return encode_head(
            request.version,
            conn.status,
            conn.reason,
            headers,
            keep_alive=keep_alive,
            chunked=chunked,
        )

    async def _stream(
        self,
        sink: Sink,
        scope: RequestScope,
        exchange: Exchange,
        conn: UpstreamConnection,
        headers: list[tuple[str, str]],
        keep_alive: bool,
        chunked: bool,
    ) -> bool:
        route = scope.route
        assert route is not None
        request = cast(FastRequest, scope.request)
        errors: dict[str, Counter] = self.forwarder.metrics.of(route.name)[1]
        sink.write(self._head(request, conn, headers, keep_alive, chunked))
        try:
            while chunk := await conn.read_chunk(route.read_timeout):
                sink.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                await sink.drain()
        except (TimeoutError, OSError, aiohttp.ClientError):
            # SECURITY: a truncated body must not look complete: drop the client connection.
            if not sink.lost:  # else the client left: not the upstream's failure
                errors["truncated"].inc()
            exchange.abort()
            sink.abort()
            return False
        except BaseException:
            exchange.abort()
            raise
        exchange.finish()
        if chunked:
            sink.write(LAST_CHUNK)
        return keep_alive
