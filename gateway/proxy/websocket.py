"""Tunnelling a vetted WebSocket upgrade to the upstream, message by message."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import WSMsgType, web

from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.responses import deny_response
from gateway.pipeline.scope import RequestScope
from gateway.proxy.forward import upstream_url

CLOSE_GRACE = 5.0
# Headers the WebSocket handshake owns on each side; the client library sets its own.
HANDSHAKE_HEADERS = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)


def _protocols(request: web.Request) -> tuple[str, ...]:
    raw = ",".join(request.headers.getall("Sec-WebSocket-Protocol", ()))
    return tuple(p.strip() for p in raw.split(",") if p.strip())


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    """Copies messages from source to sink until either closes, then closes the other."""
    async for msg in source:
        if msg.type is WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        else:
            break
    code = source.close_code or aiohttp.WSCloseCode.OK
    await sink.close(code=code)


async def tunnel_websocket(
    scope: RequestScope, session: aiohttp.ClientSession
) -> web.StreamResponse:
    """Connects upstream first (502/504 if it fails), then accepts the client and relays.

    The upgrade passed the same stages as any GET, so it is authorized before either side
    of the tunnel opens.
    """
    route = scope.route
    assert route is not None
    request = scope.request
    headers = {
        k: v for k, v in scope.upstream_headers.items() if k.lower() not in HANDSHAKE_HEADERS
    }
    protocols = _protocols(request)
    try:
        upstream = await session.ws_connect(
            upstream_url(route, scope.path, scope.query),
            headers=headers,
            protocols=protocols,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10),
            autoclose=False,
            autoping=True,
            max_msg_size=0,
        )
    except (TimeoutError, aiohttp.ServerTimeoutError):
        return deny_response(request, Deny(Reason.UPSTREAM_TIMEOUT))
    except (aiohttp.ClientError, OSError):
        return deny_response(request, Deny(Reason.UPSTREAM_UNREACHABLE))
    client = web.WebSocketResponse(
        protocols=(upstream.protocol,) if upstream.protocol else (),
        autoclose=False,
        max_msg_size=0,
    )
    async with upstream:
        await client.prepare(request)
        tasks = [
            asyncio.create_task(_pump(client, upstream)),
            asyncio.create_task(_pump(upstream, client)),
        ]
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # Give the other direction a moment to finish its closing handshake.
        _, pending = await asyncio.wait(pending, timeout=CLOSE_GRACE)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return client
