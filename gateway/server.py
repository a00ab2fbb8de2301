"""Serving an aiohttp application with the gateway's own handling of malformed requests.

aiohttp answers a request it cannot parse with a text body that echoes the offending bytes
(which may hold a cookie or a token) and logs a traceback. The gateway answers such requests
itself: a JSON body with no echo, 431 for oversize heads, 400 for broken framing, and one
log line without the request's bytes.

No answer of the gateway carries aiohttp's `Server: Python/… aiohttp/…` banner
(`drop_server_banner`): the app's responses lose it in an `on_response_prepare` hook, the
error answers above are `BareResponse`s. An upstream's own `Server` header passes through.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, streams, web, web_protocol, web_server
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.http_parser import RawRequestMessage
from multidict import CIMultiDict

from gateway.pipeline.responses import error_body

if TYPE_CHECKING:
    from gateway.front.protocol import FrontSettings

log = logging.getLogger("gateway.server")


def classify_parse_error(exc: BaseException | None) -> tuple[int, str, str]:
    """Status, reason code and safe message for an error raised while parsing a request."""
    if isinstance(exc, LineTooLong) or "Too many headers" in str(exc):
        return 431, "headers-too-large", "the request headers are too large"
    if isinstance(exc, BadHttpMessage):
        return 400, "bad-framing", "the request is malformed"
    return 500, "internal-error", "internal error"


KEEPALIVE_TIMEOUT = 75.0
"""Seconds an idle keep-alive connection stays open (aiohttp's own default is an hour)."""


def _timeout_response() -> bytes:
    body = json.dumps(
        {"error": {"code": "request-timeout", "message": "the request was not sent in time"}}
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


TIMEOUT_RESPONSE = _timeout_response()


def drop_server_banner(headers: CIMultiDict[str]) -> None:
    """Removes the `Server` header aiohttp adds by itself; any other `Server` value stays."""
    # SECURITY: the banner names exact Python and aiohttp versions for anyone matching
    # known vulnerabilities. aiohttp sets it from the SERVER_SOFTWARE object itself, so an
    # identity test tells it from an upstream's header of the same text.
    if headers.get(hdrs.SERVER) is SERVER_SOFTWARE:
        del headers[hdrs.SERVER]


async def drop_banner_hook(_request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` hook: every routed response of an app goes without the banner."""
    drop_server_banner(response.headers)


def without_banner(app: web.Application) -> web.Application:
    """`app`, with `drop_banner_hook` installed."""
    app.on_response_prepare.append(drop_banner_hook)
    return app


class BareResponse(web.Response):
    """A response that goes without the banner even when no app hook runs (the answers to
    requests that could not be parsed, which are never routed)."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        drop_server_banner(self.headers)


def bare_json_error(status: int, code: str, message: str) -> BareResponse:
    """The gateway's JSON error, as a `BareResponse` that never caches."""
    return BareResponse(
        text=json.dumps(error_body(code, message)),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


class GatewayRequestHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler with error responses that never echo request bytes, and
    deadlines for slow clients.

    # SECURITY: slowloris-style clients hold a connection by sending a request head (or body)
    # a byte at a time. A head must be complete within `header_read_timeout` seconds of its
    # first byte (else 408 and close), and a body within `body_read_timeout` seconds of the
    # end of its head (else the connection is closed and the request abandoned).
    """

    def __init__(
        self,
        manager: web_server.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        header_read_timeout: float | None = None,
        body_read_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._gw_header_timeout = header_read_timeout
        self._gw_body_timeout = body_read_timeout
        self._gw_head_timer: asyncio.TimerHandle | None = None
        self._gw_body_timer: asyncio.TimerHandle | None = None
        self._gw_payload: streams.StreamReader | None = None

    def data_received(self, data: bytes) -> None:
        if self._force_close or self._close or self._upgraded or self._payload_parser is not None:
            super().data_received(data)
            return
        payload = self._gw_payload
        between_messages = payload is None or payload.is_eof()
        if between_messages and data and self._gw_head_timer is None and self._gw_header_timeout:
            self._gw_head_timer = self._loop.call_later(
                self._gw_header_timeout, self._gw_head_timed_out
            )
        before = self._request_count
        super().data_received(data)
        if self._request_count > before:
            self._cancel_head_timer()
            self._track_body()
        elif self._gw_payload is not None and self._gw_payload.is_eof():
            self._cancel_body_timer()

    def _track_body(self) -> None:
        """Arms the body deadline for the newest message when its body is still to come."""
        self._cancel_body_timer()
        self._gw_payload = None
        if not self._messages:
            return
        message, payload = self._messages[-1]
        if not isinstance(message, RawRequestMessage) or message.upgrade:
            return
        if payload is streams.EMPTY_PAYLOAD or payload.is_eof():
            return
        self._gw_payload = payload
        if self._gw_body_timeout:
            self._gw_body_timer = self._loop.call_later(
                self._gw_body_timeout, self._gw_body_timed_out
            )

    def _cancel_head_timer(self) -> None:
        if self._gw_head_timer is not None:
            self._gw_head_timer.cancel()
            self._gw_head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._gw_body_timer is not None:
            self._gw_body_timer.cancel()
            self._gw_body_timer = None

    def _gw_head_timed_out(self) -> None:
        self._gw_head_timer = None
        if self._force_close or self.transport is None or self._upgraded:
            return
        if self._request_in_progress and self._gw_header_timeout:
            # A pipelined head behind a response still streaming: judge it once that is done.
            self._gw_head_timer = self._loop.call_later(
                self._gw_header_timeout, self._gw_head_timed_out
            )
            return
        log.info("closed a slow client: header-read-timeout")
        self.transport.write(TIMEOUT_RESPONSE)
        self.force_close()

    def _gw_body_timed_out(self) -> None:
        self._gw_body_timer = None
        payload = self._gw_payload
        if payload is None or payload.is_eof() or self._force_close or self.transport is None:
            return
        log.info("closed a slow client: body-read-timeout")
        payload.set_exception(ConnectionResetError("request body read timeout"))
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        self._gw_payload = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status == 504:
            code, reason, text = 504, "upstream-timeout", "the request timed out"
        elif status >= 500 and not isinstance(exc, BadHttpMessage):
            code, reason, text = 500, "internal-error", "internal error"
            # SECURITY: log the exception type only; messages may quote request data.
            log.error("unhandled error: %s", type(exc).__name__ if exc else "unknown")
        else:
            code, reason, text = classify_parse_error(exc)
            log.info("refused malformed request: %s", reason)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        resp = bare_json_error(code, reason, text)
        resp.force_close()
        return resp


class GatewayServer(web_server.Server):
    """A low-level server that builds `GatewayRequestHandler`s."""

    def __call__(self) -> web_protocol.RequestHandler:
        return GatewayRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayAppRunner(web.AppRunner):
    """An AppRunner whose connections use `GatewayRequestHandler`; on shutdown it first
    drains the fast front's connections (`fronts`), while the app's services still run."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.fronts: list[FrontSettings] = []

    async def shutdown(self) -> None:
        for front in self.fronts:
            await front.shutdown(self._shutdown_timeout)
        await super().shutdown()

    async def _make_server(self) -> web_server.Server:
        server = await super()._make_server()
        return GatewayServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )


def bind_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A listening TCP socket; with reuse_port, several processes can share one port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def parse_listen(value: str) -> tuple[str, int]:
    """Splits HOST:PORT (IPv6 as [addr]:port) into host and port."""
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def handler_kwargs(
    max_field_size: int,
    max_headers: int,
    *,
    header_read_timeout: float | None = None,
    body_read_timeout: float | None = None,
) -> dict[str, Any]:
    """Parser limits and slow-client deadlines for the main listener's connections."""
    return {
        "max_field_size": max_field_size,
        "max_line_size": max_field_size,
        "max_headers": max_headers,
        "access_log": None,
        "keepalive_timeout": KEEPALIVE_TIMEOUT,
        "header_read_timeout": header_read_timeout,
        "body_read_timeout": body_read_timeout,
    }
