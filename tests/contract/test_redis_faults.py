"""Redis outages: the session cache falls back to the database and the bus heals itself.

Outages are real: a private `redis-server` is stopped and started again (same port), or
paused with `CLIENT PAUSE` so that it keeps its data while unreachable. Everything is
awaited (hook events, queue drains, reconnection), never slept for.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.events import Actor, AuditEvent
from gateway.sessions import tokens
from gateway.sessions.models import SessionRecord
from gateway.storage.redis.bus import BUS_DISCONNECTED, BUS_RESYNC, RedisChangeBus
from gateway.storage.redis.client import RedisHandle, open_redis
from gateway.storage.redis.health import Breaker, status
from gateway.storage.redis.sessions import RedisSessionCache
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.sessions import SqliteSessionStore
from tests.support.services import ServerHandle

WAIT = 10.0
NOW = 1_700_000_000.0
PrivateRedis = Callable[[], AbstractAsyncContextManager[ServerHandle]]


def make(user: str = "u_1") -> SessionRecord:
    return SessionRecord(
        id=tokens.new_session_id(), token_hash=tokens.hash_token(tokens.new_token()),
        user_id=user, tenant_id="t_a", created_at=NOW, last_seen_at=NOW,
        expires_at=NOW + 3600, idle_timeout=600,
    )  # fmt: skip


def event() -> AuditEvent:
    return AuditEvent(action="session.revoke", actor=Actor("user", "u_admin"), ts=NOW)


async def wait(ev: asyncio.Event) -> None:
    await asyncio.wait_for(ev.wait(), WAIT)


class Replica:
    """One gateway replica's bus, with its hooks and local inbox observable."""

    def __init__(self, handle: RedisHandle, **options: Any) -> None:
        self.down, self.resynced = asyncio.Event(), asyncio.Event()
        self.inbox: asyncio.Queue[tuple[str, Mapping[str, Any]]] = asyncio.Queue()
        self.bus = RedisChangeBus(
            handle, on_disconnect=self.down.set, on_resync=self.resynced.set,
            backoff=(0.02, 0.2), **options,
        )  # fmt: skip
        self.bus.subscribe(self._record)

    async def _record(self, topic: str, payload: Mapping[str, Any]) -> None:
        await self.inbox.put((topic, payload))

    async def next(self, skip: tuple[str, ...] = ()) -> tuple[str, Mapping[str, Any]]:
        while True:
            got = await asyncio.wait_for(self.inbox.get(), WAIT)
            if got[0] not in skip:
                return got


@pytest.fixture
async def server(private_redis: PrivateRedis) -> AsyncIterator[ServerHandle]:
    async with private_redis() as url:
        yield url


@pytest.fixture
async def handle(server: ServerHandle, redis_prefix: str) -> AsyncIterator[RedisHandle]:
    made = open_redis(server.url, prefix=f"{redis_prefix}faults-{secrets.token_hex(4)}:")
    yield made
    await made.aclose()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteSessionStore]:
    db = await SqliteDatabase.open(tmp_path / "gw.db")
    yield SqliteSessionStore(db)
    await db.close()


async def pause(server: ServerHandle, ms: int) -> None:
    """Makes the server unresponsive for `ms` milliseconds; its data stays."""
    admin = open_redis(server.url, prefix="admin:")
    try:
        await admin.client.client_pause(ms, all=True)
    finally:
        await admin.aclose()


async def test_bus_reports_the_outage_keeps_local_delivery_and_heals(
    server: ServerHandle, handle: RedisHandle
) -> None:
    async with AsyncExitStack() as stack:
        a, b = Replica(handle), Replica(handle)
        for r in (a, b):
            await r.bus.start()
            stack.push_async_callback(r.bus.close)
            assert r.bus.connected
        await server.stop()
        for r in (a, b):
            await wait(r.down)
            assert not r.bus.connected
            assert await r.next() == (BUS_DISCONNECTED, {})
        await a.bus.publish("session.revoked", {"ids": ["s_1"]})  # does not raise
        assert await a.next() == ("session.revoked", {"ids": ["s_1"]})
        await server.start()
        for r in (a, b):
            await wait(r.resynced)
            await asyncio.wait_for(r.bus.wait_connected(), WAIT)
            assert r.bus.connected
            assert await r.next(skip=(BUS_DISCONNECTED,)) == (BUS_RESYNC, {})
        await a.bus.publish("session.revoked", {"ids": ["s_2"]})
        assert await b.next() == ("session.revoked", {"ids": ["s_2"]})


async def test_bus_started_during_an_outage_connects_when_redis_returns(
    server: ServerHandle, handle: RedisHandle
) -> None:
    await server.stop()
    r = Replica(handle)
    await r.bus.start()  # returns after the first (failed) attempt
    try:
        assert not r.bus.connected
        await wait(r.down)
        await server.start()
        await wait(r.resynced)
        assert r.bus.connected
    finally:
        await r.bus.close()


async def test_bus_notices_a_connection_that_stops_answering(
    server: ServerHandle, handle: RedisHandle
) -> None:
    r = Replica(handle, ping_interval=0.1)
    await r.bus.start()
    try:
        await pause(server, 1500)
        await wait(r.down)
        await wait(r.resynced)  # once the pause is over
        assert r.bus.connected
    finally:
        await r.bus.close()


async def test_an_unreadable_notice_makes_every_subscriber_resync(
    redis_url: str, redis_prefix: str
) -> None:
    shared = open_redis(redis_url, prefix=f"{redis_prefix}junk-{secrets.token_hex(4)}:")
    r = Replica(shared)
    await r.bus.start()
    try:
        await shared.client.publish(shared.key("bus"), b"{not json")
        await shared.client.publish(shared.key("bus"), b'{"topic": 1, "payload": {}}')
        assert await r.next() == (BUS_RESYNC, {})
        assert await r.next() == (BUS_RESYNC, {})
    finally:
        await r.bus.close()
        await shared.aclose()


async def test_session_cache_serves_from_the_database_while_redis_is_down(
    server: ServerHandle, handle: RedisHandle, store: SqliteSessionStore
) -> None:
    cache = RedisSessionCache(store, handle)
    try:
        record, later = make(), make()
        await cache.create(record)
        assert await cache.get_by_token_hash(record.token_hash) == record
        await server.stop()
        assert await cache.get_by_token_hash(record.token_hash) == record
        assert not cache.breaker.available
        assert (await status(handle, cache.breaker)) == {"redis": "down", "degraded": ["sessions"]}
        await cache.create(later)
        assert await cache.revoke(record.id, NOW + 1, event()) is True
        got = await cache.get_by_token_hash(record.token_hash)
        assert got is not None
        assert got.revoked_at == NOW + 1
        assert await cache.get_by_token_hash(later.token_hash) == later
        assert cache.pending == 1
        await server.start()
        await asyncio.wait_for(cache.drain(), WAIT)
        assert cache.pending == 0
        assert cache.breaker.available
        assert await cache.get_by_token_hash(later.token_hash) == later
        assert await handle.client.exists(handle.key(f"sess:{later.token_hash}")) == 1
    finally:
        await cache.close()


async def test_a_deletion_missed_during_an_outage_is_retried_before_copies_are_trusted(
    server: ServerHandle, handle: RedisHandle, store: SqliteSessionStore
) -> None:
    a, b = RedisSessionCache(store, handle), RedisSessionCache(store, handle)
    try:
        record = make()
        await a.create(record)
        assert await b.get_by_token_hash(record.token_hash) == record  # b's copy in Redis
        await pause(server, 1200)  # Redis keeps that copy but does not answer
        assert await a.revoke(record.id, NOW + 1, event()) is True
        assert a.pending == 1
        revoked = await a.get_by_token_hash(record.token_hash)  # a bypasses Redis meanwhile
        assert revoked is not None
        assert revoked.revoked_at == NOW + 1
        await asyncio.wait_for(a.drain(), WAIT)
        assert await handle.client.exists(handle.key(f"sess:{record.token_hash}")) == 0
        got = await b.get_by_token_hash(record.token_hash)
        assert got is not None
        assert got.revoked_at == NOW + 1
    finally:
        await a.close()
        await b.close()


def test_breaker_skips_redis_during_cooldown_with_one_probe_per_cooldown() -> None:
    now = [0.0]
    breaker = Breaker("sessions", cooldown=1.0, clock=lambda: now[0])
    assert breaker.allow()
    breaker.failed(ConnectionError("down"))
    assert not breaker.available
    assert not breaker.allow()
    now[0] = 1.0
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else keeps skipping
    breaker.succeeded()
    assert breaker.available
    assert breaker.allow()


async def test_the_handle_never_shows_the_url_and_requires_a_prefix() -> None:
    made = open_redis("redis://:hunter2@127.0.0.1:1/0", prefix="p:")
    try:
        assert "hunter2" not in repr(made)
        assert made.key("sess:x") == "p:sess:x"
        assert await made.ping() is False  # nothing listens on port 1: False, not an error
    finally:
        await made.aclose()
    with pytest.raises(ValueError, match="prefix"):
        open_redis("redis://127.0.0.1:1/0", prefix="")
