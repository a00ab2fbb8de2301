"""What operators use every day, registered in one call: session administration, the audit
API and its stream, the console, and the optional JSON-lines audit sink.

`setup_operators(app)` must run after `setup_services` (its context reads the opened stores
and services) and before the catch-all proxy route.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from gateway import keys
from gateway.audit.readers import reader_for
from gateway.audit.sink import JsonLinesSink
from gateway.audit.stream import LOOKBACK, AuditFeed
from gateway.web.admin_audit import AUDIT_FEED, STREAM_LOOKBACK, setup_audit_api
from gateway.web.admin_sessions import setup_session_admin
from gateway.web.console import setup_console


def sink_target(app: web.Application) -> str | None:
    """Where to copy the audit stream as JSON lines: `audit.sink` (`-`/`stdout` or a file
    path; None: no sink)."""
    return app[keys.CONFIG].audit.sink


async def audit_feed_ctx(app: web.Application) -> AsyncIterator[None]:
    """The process's audit feed (and sink) over the stores the services context opened."""
    stores = app[keys.STORES]
    feed = AuditFeed(reader_for(stores))
    app[AUDIT_FEED] = feed
    app[STREAM_LOOKBACK] = LOOKBACK if stores.postgres is not None else 0
    unsubscribe = stores.bus.subscribe(feed.on_bus)
    feed.start()
    sink = None
    target = sink_target(app)
    if target is not None:
        position = Path(app[keys.STATE].root) / "audit-sink.position"
        sink = JsonLinesSink(feed, target, position if target not in ("-", "stdout") else None)
        await sink.start()
    try:
        yield
    finally:
        if sink is not None:
            await sink.close()
        unsubscribe()
        await feed.close()


async def end_streams(app: web.Application) -> None:
    """On shutdown, open event streams end at once instead of holding the server open."""
    feed = app.get(AUDIT_FEED)
    if feed is not None:
        feed.closed.set()
        feed.signal.notify()


def setup_operators(app: web.Application) -> None:
    """Registers the session and audit admin API, the console and the audit feed."""
    setup_session_admin(app)
    setup_audit_api(app)
    setup_console(app)
    app.cleanup_ctx.append(audit_feed_ctx)
    app.on_shutdown.append(end_streams)
