"""Serving an aiohttp application with the gateway's own handling of malformed requests.

aiohttp answers a request it cannot parse with a text body that echoes the offending bytes
(which may hold a cookie or a token) and logs a traceback. The gateway answers such requests
itself: a JSON body with no echo, 431 for oversize heads, 400 for broken framing, and one
log line without the request's bytes.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from aiohttp import web, web_protocol, web_server
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from gateway.pipeline.responses import json_error

log = logging.getLogger("gateway.server")


def classify_parse_error(exc: BaseException | None) -> tuple[int, str, str]:
    """Status, reason code and safe message for an error raised while parsing a request."""
    if isinstance(exc, LineTooLong) or "Too many headers" in str(exc):
        return 431, "headers-too-large", "the request headers are too large"
    if isinstance(exc, BadHttpMessage):
        return 400, "bad-framing", "the request is malformed"
    return 500, "internal-error", "internal error"


class GatewayRequestHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler with error responses that never echo request bytes."""

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
        resp = json_error(code, reason, text)
        resp.force_close()
        return resp


class GatewayServer(web_server.Server):
    """A low-level server that builds `GatewayRequestHandler`s."""

    def __call__(self) -> web_protocol.RequestHandler:
        return GatewayRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayAppRunner(web.AppRunner):
    """An AppRunner whose connections use `GatewayRequestHandler`."""

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


def handler_kwargs(max_field_size: int, max_headers: int) -> dict[str, Any]:
    """Parser limits for the main listener's connections."""
    return {
        "max_field_size": max_field_size,
        "max_line_size": max_field_size,
        "max_headers": max_headers,
        "access_log": None,
    }
