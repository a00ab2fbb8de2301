"""`RedisSessionCache` over a real SQLite store and the real Redis (per-run prefixed keys).

Two caches over one database and one prefix play two gateway replicas. What matters through
a cache: a change made on one replica is what every replica reads next (a revoked session is
never served as valid from a copy), a hit does not touch the database, and copies never
outlive their session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.events import Actor, AuditEvent
from gateway.sessions import tokens
from gateway.sessions.models import SessionRecord
from gateway.storage.ports import SessionStore
from gateway.storage.redis.client import RedisHandle, open_redis
from gateway.storage.redis.sessions import RedisSessionCache, decode, encode
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.sessions import SqliteSessionStore

NOW = 1_700_000_000.0


class Counting:
    """The wrapped store, counting token-hash reads; `after_read` runs before one returns."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.reads = 0
        self.after_read: Callable[[], Awaitable[None]] | None = None

    async def get_by_token_hash(self, token_hash: str) -> SessionRecord | None:
        self.reads += 1
        record = await self.store.get_by_token_hash(token_hash)
        hook, self.after_read = self.after_read, None
        if hook is not None:
            await hook()
        return record

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Env:
    db: Counting
    a: RedisSessionCache
    b: RedisSessionCache
    handle: RedisHandle
    clock: Clock


@pytest.fixture
async def env(tmp_path: Path, redis_url: str, redis_prefix: str) -> AsyncIterator[Env]:
    db = await SqliteDatabase.open(tmp_path / "gw.db")
    handle = open_redis(redis_url, prefix=f"{redis_prefix}sc-{secrets.token_hex(4)}:")
    counting, clock = Counting(SqliteSessionStore(db)), Clock()
    a = RedisSessionCache(counting, handle, ttl=60, clock=clock)
    b = RedisSessionCache(counting, handle, ttl=60, clock=clock)
    try:
        yield Env(counting, a, b, handle, clock)
    finally:
        for cache in (a, b):
            await cache.close()
        await handle.aclose()
        await db.close()


def make(user: str = "u_1", tenant: str = "t_a", **changes: Any) -> SessionRecord:
    record = SessionRecord(
        id=tokens.new_session_id(), token_hash=tokens.hash_token(tokens.new_token()),
        user_id=user, tenant_id=tenant, created_at=NOW, last_seen_at=NOW,
        expires_at=NOW + 3600, idle_timeout=600, ip="192.0.2.1", user_agent="ua",
    )  # fmt: skip
    return dataclasses.replace(record, **changes)


def event(action: str = "session.revoke") -> AuditEvent:
    return AuditEvent(action=action, actor=Actor("user", "u_admin"), tenant_id="t_a", ts=NOW)


async def warm(env: Env, *records: SessionRecord) -> None:
    """Both replicas hold a copy of each record (read once each, then served from Redis)."""
    for record in records:
        for cache in (env.a, env.b):
            assert await cache.get_by_token_hash(record.token_hash) == record


async def test_a_hit_is_served_without_touching_the_database(env: Env) -> None:
    record = make(mfa=True, auth_method="oidc", ip=None)
    await env.a.create(record)
    assert await env.a.get_by_token_hash(record.token_hash) == record
    assert env.db.reads == 1
    assert await env.a.get_by_token_hash(record.token_hash) == record
    assert await env.b.get_by_token_hash(record.token_hash) == record
    assert env.db.reads == 1


async def test_unknown_token_falls_through_and_is_not_cached(env: Env) -> None:
    assert await env.a.get_by_token_hash("0" * 64) is None
    assert await env.a.get_by_token_hash("0" * 64) is None
    assert env.db.reads == 2


async def test_revoke_then_get_is_the_revoked_record_on_every_replica(env: Env) -> None:
    record = make()
    await env.a.create(record)
    await warm(env, record)
    assert await env.a.revoke(record.id, NOW + 5, event()) is True
    for cache in (env.a, env.b):
        got = await cache.get_by_token_hash(record.token_hash)
        assert got is not None
        assert got.revoked_at == NOW + 5


async def test_revoke_all_for_user_reaches_copies_on_both_replicas(env: Env) -> None:
    mine1, mine2, keep, other = make(), make(tenant="t_b"), make(), make(user="u_2")
    for r in (mine1, mine2, keep, other):
        await env.a.create(r)
    await warm(env, mine1, mine2, keep, other)
    ids = await env.b.revoke_all_for_user("u_1", NOW + 1, event(), except_id=keep.id)
    assert sorted(ids) == sorted([mine1.id, mine2.id])
    for cache in (env.a, env.b):
        for r in (mine1, mine2):
            got = await cache.get_by_token_hash(r.token_hash)
            assert got is not None
            assert got.revoked_at == NOW + 1
        assert await cache.get_by_token_hash(keep.token_hash) == keep
        assert await cache.get_by_token_hash(other.token_hash) == other


async def test_revoke_all_for_tenant_reaches_copies(env: Env) -> None:
    a1, b1 = make(tenant="t_a"), make(tenant="t_b")
    for r in (a1, b1):
        await env.a.create(r)
    await warm(env, a1, b1)
    assert await env.a.revoke_all_for_tenant("t_a", NOW + 2, event()) == [a1.id]
    got = await env.b.get_by_token_hash(a1.token_hash)
    assert got is not None
    assert not got.is_valid(NOW + 3)
    assert await env.b.get_by_token_hash(b1.token_hash) == b1


async def test_rotate_revokes_the_old_copy_and_serves_the_new_session(env: Env) -> None:
    old = make()
    await env.a.create(old)
    await warm(env, old)
    new = make(created_at=NOW + 10, last_seen_at=NOW + 10)
    assert await env.a.rotate(old.id, new, event("session.rotate")) is True
    got_old = await env.b.get_by_token_hash(old.token_hash)
    assert got_old is not None
    assert got_old.revoked_at == NOW + 10
    assert await env.b.get_by_token_hash(new.token_hash) == new


async def test_mfa_at_survives_the_cached_copy(env: Env) -> None:
    verified, never = make(mfa=True, mfa_at=NOW - 7.5), make()
    for r in (verified, never):
        await env.a.create(r)
    await warm(env, verified, never)  # the second replica reads Redis's copies
    reads = env.db.reads
    got = await env.b.get_by_token_hash(verified.token_hash)
    assert got is not None and got.mfa_at == NOW - 7.5
    got = await env.b.get_by_token_hash(never.token_hash)
    assert got is not None and got.mfa_at is None
    assert env.db.reads == reads
    # A copy written before the field existed reads as "never verified", not as a miss.
    legacy = encode(never).replace(',"mfa_at":null', "")
    assert '"mfa_at"' not in legacy
    assert decode(legacy) == never


async def test_mark_for_rotation_is_seen_through_the_copies(env: Env) -> None:
    record = make()
    await env.a.create(record)
    await warm(env, record)
    assert await env.a.mark_for_rotation("u_1") == [record.id]
    got = await env.b.get_by_token_hash(record.token_hash)
    assert got is not None
    assert got.rotate_pending


async def test_touch_drops_the_copy_so_the_new_last_seen_is_read(env: Env) -> None:
    record = make()
    await env.a.create(record)
    await warm(env, record)
    await env.a.touch(record.id, NOW + 30)
    got = await env.b.get_by_token_hash(record.token_hash)
    assert got is not None
    assert got.last_seen_at == NOW + 30


async def test_a_read_racing_a_revocation_never_stores_a_stale_valid_copy(env: Env) -> None:
    record = make()
    await env.a.create(record)

    async def revoke_meanwhile() -> None:  # lands between a's database read and its fill
        assert await env.b.revoke(record.id, NOW + 1, event()) is True

    env.db.after_read = revoke_meanwhile
    stale = await env.a.get_by_token_hash(record.token_hash)
    assert stale == record  # what the database said when a read it
    for cache in (env.a, env.b):
        got = await cache.get_by_token_hash(record.token_hash)
        assert got is not None
        assert got.revoked_at == NOW + 1


async def test_a_copy_never_outlives_the_session_or_the_bound(env: Env) -> None:
    short = make(last_seen_at=NOW - 590)  # idle deadline in 10 s
    long = make()
    for r in (short, long):
        await env.a.create(r)
        await env.a.get_by_token_hash(r.token_hash)
    ttl_short = await env.handle.client.pttl(env.handle.key(f"sess:{short.token_hash}"))
    ttl_long = await env.handle.client.pttl(env.handle.key(f"sess:{long.token_hash}"))
    assert 0 < ttl_short <= 10_000
    assert 10_000 < ttl_long <= 60_000


async def test_a_malformed_copy_reads_as_a_miss(env: Env) -> None:
    record = make()
    await env.a.create(record)
    key = env.handle.key(f"sess:{record.token_hash}")
    for junk in (b"not json", b"[]", b'{"v": 99}', encode(record).replace('"v":1', '"v":1,"x":0')):
        await env.handle.client.set(key, junk, px=60_000)
        assert await env.a.get_by_token_hash(record.token_hash) == record
    assert env.db.reads == 4


async def test_writes_other_than_touch_move_the_epoch(env: Env) -> None:
    epoch_key = env.handle.key("sess:epoch")
    record = make()
    await env.a.create(record)
    before = await env.handle.client.get(epoch_key)
    await env.a.touch(record.id, NOW + 1)
    assert await env.handle.client.get(epoch_key) == before
    await env.a.revoke(record.id, NOW + 2, event())
    assert await env.handle.client.get(epoch_key) != before


async def test_concurrent_reads_of_one_session_agree(env: Env) -> None:
    record = make()
    await env.a.create(record)
    got = await asyncio.gather(*(env.a.get_by_token_hash(record.token_hash) for _ in range(20)))
    assert got == [record] * 20
