"""Reading the audit stream over HTTP: `GET /audit` (filters, paging) and `GET /audit/stream`
(Server-Sent Events).

A tenant admin reads their tenant's events only; an operator, every chain (or one tenant's
with `?tenant=`). Another tenant answers 404. Events never hold secrets, so they are shown as
stored. The stream's event ids are `seq`: a client that reconnects with `Last-Event-ID`
continues after the last event it got, on any replica. Keep-alive comments flow every
`keepalive` seconds (15 by default), and the caller's right to read is re-checked at each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.audit.events import RequestContext
from gateway.audit.store import MAX_LIMIT, AuditQuery, StoredEvent
from gateway.audit.stream import AuditFeed, Cursor
from gateway.identity.principal import Principal
from gateway.pipeline.responses import json_error
from gateway.sessions.cookies import set_session_cookie
from gateway.storage.ports import StoreUnavailable
from gateway.web.admin import PREFIX, Refused, admin_principal, guarded
from gateway.web.admin_sessions import admin_scope
from gateway.web.common import AUTH_SERVICES, AuthServices, BadBody, error_response

AUDIT_FEED = web.AppKey("gateway_audit_feed", AuditFeed)
STREAM_LOOKBACK = web.AppKey("gateway_audit_lookback", int)
ACTION = re.compile(r"[a-z0-9_.]{1,64}\*?|\*")
KEEPALIVE = 15.0
RECHECK = 1.0
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
}


def int_param(request: web.Request, name: str, low: int, high: int) -> int | None:
    """An optional integer query parameter within [low, high]; BadBody (400) otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadBody(f"`{name}` must be an integer from {low} to {high}")
    return int(raw)


def since_param(raw: str | None) -> float | None:
    """`since` as Unix seconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadBody("`since` must be Unix seconds or an ISO 8601 time") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.now().astimezone().tzinfo).timestamp()
    return moment.timestamp()


def audit_query(request: web.Request, tenant_id: str | None) -> AuditQuery:
    """The query of `GET /audit` (`tenant` is already resolved by the caller's scope)."""
    action = request.query.get("action") or None
    if action is not None and not ACTION.fullmatch(action):
        raise BadBody("`action` must be a dotted lower-case name, optionally ending in *")
    big = 2**62
    return AuditQuery(
        tenant_id=tenant_id,
        action=None if action == "*" else action,
        since=since_param(request.query.get("since")),
        after_seq=int_param(request, "after", 0, big),
        before_seq=int_param(request, "before", 0, big),
        limit=int_param(request, "limit", 1, MAX_LIMIT) or 100,
    )


@guarded
async def list_audit(
    request: web.Request, services: AuthServices, principal: Principal, ctx: RequestContext
) -> web.StreamResponse:
    """`GET /audit?tenant=&action=&since=&after=&before=&limit=` → 200 {events}, newest last."""
    scope = await admin_scope(request, services, principal)
    query = audit_query(request, scope.id if scope else None)
    events = await request.app[AUDIT_FEED].reader.find(query)
    body: dict[str, Any] = {"events": [e.view() for e in events]}
    if events:
        body["next_after"] = events[-1].seq
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def sse_frames(events: list[StoredEvent]) -> bytes:
    """Events as Server-Sent Events frames (JSON data never holds a raw newline)."""
    return "".join(
        f"id: {e.seq}\nevent: audit\ndata: {json.dumps(e.view(), separators=(',', ':'))}\n\n"
        for e in events
    ).encode()


async def start_position(request: web.Request, feed: AuditFeed) -> int:
    """Where a stream starts: after `Last-Event-ID`, else after `?after=`, else at the end."""
    resume = request.headers.get("Last-Event-ID", "").strip()
    if resume:
        if not resume.isdigit():
            raise BadBody("`Last-Event-ID` must be an event id of this stream")
        return int(resume)
    after = int_param(request, "after", 0, 2**62)
    return after if after is not None else await feed.reader.last_seq()


async def still_allowed(request: web.Request, services: AuthServices) -> bool:
    """Whether the caller may still read this stream (session alive, role kept)."""
    try:
        await admin_scope(request, services, await admin_principal(services, request))
    except (Refused, StoreUnavailable):
        return False
    return True


async def pump(request: web.Request, resp: web.StreamResponse, cursor: Cursor) -> None:
    """Writes new events as they come, and keep-alive comments, until the client leaves,
    the caller loses the right to read, or the gateway shuts down."""
    feed, services = request.app[AUDIT_FEED], request.app[AUTH_SERVICES]
    keepalive = float(int_param(request, "keepalive", 1, 60) or KEEPALIVE)
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while not feed.closed.is_set():
        changed = feed.signal.current()
        events = await cursor.read()
        if events:
            await resp.write(sse_frames(events))
            quiet_since = loop.time()
        elif loop.time() - quiet_since >= keepalive:
            # SECURITY: a revoked session or a removed role ends the stream within `keepalive`.
            if not await still_allowed(request, services):
                return
            await resp.write(b": keep-alive\n\n")
            quiet_since = loop.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), min(RECHECK, keepalive))


async def audit_stream(request: web.Request) -> web.StreamResponse:
    """`GET /audit/stream?tenant=` → `text/event-stream` of new events (see module doc)."""
    services, feed = request.app[AUTH_SERVICES], request.app[AUDIT_FEED]
    try:
        principal = await admin_principal(services, request)
        scope = await admin_scope(request, services, principal)
        start = await start_position(request, feed)
    except Refused as refused:
        return refused.response
    except BadBody as exc:
        return error_response(exc)
    except StoreUnavailable:
        return json_error(503, "store-unavailable", "a backing store is unavailable")
    resp = web.StreamResponse(headers=SSE_HEADERS)
    if principal.new_token is not None:
        set_session_cookie(resp, principal.new_token, services.cookie)
    await resp.prepare(request)
    await resp.write(b"retry: 1000\n: connected\n\n")
    lookback = request.app[STREAM_LOOKBACK]
    cursor = Cursor(feed.reader, scope.id if scope else None, start, lookback)
    with feed.following(), contextlib.suppress(ConnectionError, StoreUnavailable):
        await pump(request, resp, cursor)
    return resp


def setup_audit_api(app: web.Application) -> None:
    """Registers the audit part of the admin API (the feed is opened by `setup_operators`)."""
    app.router.add_get(f"{PREFIX}/audit", list_audit)
    app.router.add_get(f"{PREFIX}/audit/stream", audit_stream)
