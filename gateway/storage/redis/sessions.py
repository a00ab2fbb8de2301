"""A Redis read-through cache in front of the database's `SessionStore`.

The database is the record; Redis only ever holds copies. Keys (under the handle's prefix):
`sess:<token_hash>` (the record as JSON), `sess:id:<id>` (its token hash, to find the copy
from an id) and `sess:epoch` (a random value replaced by every security-relevant change).

Guarantees:

* a hit costs one round trip (`MGET` of the copy and the epoch) and no database access;
* a copy lives at most `ttl` seconds, and a valid session's copy no longer than the
  session's own remaining (idle or absolute) lifetime, so a copy never outlives validity;
* every mutation is written to the database first, then the affected copies are deleted;
  revocations, rotation and rotation flags also replace the epoch, and a copy is stored
  only if the epoch is unchanged since before the database read that produced it, so a
  read that raced with a revocation can never put a stale valid copy back;
* Redis failures never fail a call: reads fall back to the database, and a deletion that
  could not be made is queued and retried (with backoff) until Redis takes it; until then
  this process bypasses Redis. The stale window elsewhere is therefore the outage plus one
  retry (at most `retry_backoff[1]` seconds), and at worst `ttl` (this process died with
  deletions queued, or Redis evicted an index key: run it with `noeviction`);
* `create` does not store a copy: the first read does, under the epoch guard.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import json
import logging
import random
import secrets
import time
from collections.abc import Callable

from gateway.audit.events import AuditEvent
from gateway.sessions.models import SessionRecord
from gateway.storage.ports import SessionStore
from gateway.storage.redis.client import REDIS_ERRORS, LuaScript, RedisHandle
from gateway.storage.redis.health import Breaker

log = logging.getLogger(__name__)

FORMAT = 1  # version of the cached JSON; any other value reads as a miss
BATCH = 500  # ids per invalidation script call

# KEYS: epoch, sess:<th>, sess:id:<id>. ARGV: epoch seen before the read, json, th, ttl ms.
FILL = LuaScript(
    """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[4])
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
return 1
"""
)
# KEYS: epoch, sess:id:<id>... ARGV: new epoch ('' keeps it), prefix of the sess:<th> keys.
# The copy's key is derived from the index value; fine on a single Redis (not a cluster).
INVALIDATE = LuaScript(
    """
if ARGV[1] ~= '' then redis.call('SET', KEYS[1], ARGV[1]) end
local n = 0
for i = 2, #KEYS do
  local th = redis.call('GET', KEYS[i])
  if th then n = n + redis.call('DEL', ARGV[2] .. th) end
  redis.call('DEL', KEYS[i])
end
return n
"""
)


def encode(record: SessionRecord) -> str:
    """The cached form of `record` (it holds the token hash, never a token)."""
    return json.dumps({"v": FORMAT, **dataclasses.asdict(record)}, separators=(",", ":"))


def decode(raw: bytes | str) -> SessionRecord | None:
    """The record in a cached value; None for anything malformed (read as a miss)."""
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.pop("v", None) != FORMAT:
            return None
        return SessionRecord(**data)
    except (ValueError, TypeError):
        return None


class RedisSessionCache:
    """`SessionStore` that reads through Redis and writes to the wrapped store."""

    def __init__(
        self,
        store: SessionStore,
        handle: RedisHandle,
        *,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.time,
        breaker: Breaker | None = None,
        retry_backoff: tuple[float, float] = (0.05, 1.0),
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self._store = store
        self._handle = handle
        self._ttl = ttl
        self._clock = clock
        self.breaker = breaker or Breaker("sessions")
        self._backoff = retry_backoff
        self._epoch = handle.key("sess:epoch")
        self._pending: set[str] = set()  # ids whose copies still have to be deleted
        self._retry: asyncio.Task[None] | None = None

    def _copy_key(self, token_hash: str) -> str:
        return self._handle.key(f"sess:{token_hash}")

    def _index_key(self, session_id: str) -> str:
        return self._handle.key(f"sess:id:{session_id}")

    # ---- reads --------------------------------------------------------------------------

    async def get_by_token_hash(self, token_hash: str) -> SessionRecord | None:
        """The session for this token hash: Redis's copy if any, else the database's."""
        cached, epoch = await self._lookup(token_hash)
        if cached is not None:
            return cached
        record = await self._store.get_by_token_hash(token_hash)
        if record is not None and epoch is not None:
            await self._fill(record, epoch)
        return record

    async def _lookup(self, token_hash: str) -> tuple[SessionRecord | None, str | None]:
        """(the cached copy, the epoch to fill under); (None, None): do not use Redis."""
        # Queued deletions mean Redis may hold copies this process knows to be stale.
        if self._pending or not self.breaker.allow():
            return None, None
        try:
            raw, epoch = await self._handle.client.mget(self._copy_key(token_hash), self._epoch)
        except REDIS_ERRORS as exc:
            self.breaker.failed(exc)
            return None, None
        self.breaker.succeeded()
        # SECURITY: Redis is inside the trust boundary like the database (whoever can write
        # it can forge sessions: protect it with auth/TLS/network policy); a malformed copy
        # is a miss, never a session.
        record = None if raw is None else decode(raw)
        if epoch is None:
            return record, ""
        return record, epoch if isinstance(epoch, str) else epoch.decode()

    async def _fill(self, record: SessionRecord, epoch: str) -> None:
        """Stores a copy unless the epoch moved since `epoch` was read; never raises."""
        now = self._clock()
        # A valid session's copy dies with it; a dead one (revoked, expired) stays dead.
        life = min(self._ttl, record.idle_expires_at - now) if record.is_valid(now) else self._ttl
        ttl_ms = int(life * 1000)
        if ttl_ms < 1:
            return
        keys = (self._epoch, self._copy_key(record.token_hash), self._index_key(record.id))
        try:
            await self._handle.run_script(
                FILL, keys, (epoch, encode(record), record.token_hash, ttl_ms)
            )
        except REDIS_ERRORS as exc:
            self.breaker.failed(exc)

    async def get(self, session_id: str) -> SessionRecord | None:
        """Straight from the database (administrative path)."""
        return await self._store.get(session_id)

    async def list(
        self, tenant_id: str | None, user_id: str | None, *, now: float
    ) -> builtins.list[SessionRecord]:
        """Straight from the database."""
        return await self._store.list(tenant_id, user_id, now=now)

    # ---- writes: database first, then the copies ----------------------------------------

    async def create(self, record: SessionRecord, audit: AuditEvent | None = None) -> None:
        await self._store.create(record, audit)

    async def touch(self, session_id: str, last_seen_at: float) -> None:
        """Touches the database row, then drops the copy (its last-seen is now old)."""
        await self._store.touch(session_id, last_seen_at)
        await self._invalidate([session_id], new_epoch=False)

    async def mark_for_rotation(
        self, user_id: str, tenant_id: str | None = None
    ) -> builtins.list[str]:
        ids = await self._store.mark_for_rotation(user_id, tenant_id)
        await self._invalidate(ids)
        return ids

    async def revoke(self, session_id: str, ts: float, audit: AuditEvent) -> bool:
        done = await self._store.revoke(session_id, ts, audit)
        await self._invalidate([session_id])
        return done

    async def revoke_all_for_user(
        self, user_id: str, ts: float, audit: AuditEvent, except_id: str | None = None
    ) -> builtins.list[str]:
        ids = await self._store.revoke_all_for_user(user_id, ts, audit, except_id)
        await self._invalidate(ids)
        return ids

    async def revoke_all_for_tenant(
        self, tenant_id: str, ts: float, audit: AuditEvent
    ) -> builtins.list[str]:
        ids = await self._store.revoke_all_for_tenant(tenant_id, ts, audit)
        await self._invalidate(ids)
        return ids

    async def rotate(self, old_id: str, new_record: SessionRecord, audit: AuditEvent) -> bool:
        done = await self._store.rotate(old_id, new_record, audit)
        await self._invalidate([old_id])
        return done

    async def delete_expired(self, now: float) -> int:
        """Database only: the copies of dead sessions read as dead and expire by TTL."""
        return await self._store.delete_expired(now)

    # ---- invalidation and its retry queue -----------------------------------------------

    async def _invalidate(self, ids: builtins.list[str], *, new_epoch: bool = True) -> None:
        """Deletes the copies of `ids` (and replaces the epoch); queues them on failure."""
        if self._pending or not self.breaker.allow():
            self._queue(ids)
            return
        try:
            await self._apply(ids, new_epoch=new_epoch)
        except REDIS_ERRORS as exc:
            self.breaker.failed(exc)
            self._queue(ids)
        else:
            self.breaker.succeeded()

    async def _apply(self, ids: builtins.list[str], *, new_epoch: bool) -> None:
        epoch = secrets.token_hex(8) if new_epoch else ""
        prefix = self._handle.key("sess:")
        for start in range(0, max(len(ids), 1), BATCH):
            keys = [self._epoch, *(self._index_key(i) for i in ids[start : start + BATCH])]
            await self._handle.run_script(INVALIDATE, keys, (epoch, prefix))

    def _queue(self, ids: builtins.list[str]) -> None:
        # An empty list still moves the epoch (a racing read must not store its copy).
        self._pending.update(ids or [""])
        if self._retry is None or self._retry.done():
            self._retry = asyncio.create_task(self._flush(), name="redis-session-invalidation")

    async def _flush(self) -> None:
        """Retries the queued deletions until Redis takes them all."""
        delay = self._backoff[0]
        while self._pending:
            batch = sorted(self._pending)
            try:
                await self._apply([i for i in batch if i], new_epoch=True)
            except REDIS_ERRORS as exc:
                self.breaker.failed(exc)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                delay = min(delay * 2, self._backoff[1])
                continue
            self._pending.difference_update(batch)
            self.breaker.succeeded()
        log.info("queued session cache deletions applied", extra={"action": "redis.sessions"})

    @property
    def pending(self) -> int:
        """How many session copies still wait to be deleted from Redis."""
        return len(self._pending)

    async def drain(self) -> None:
        """Returns once every queued deletion has reached Redis."""
        while self._retry is not None and not self._retry.done():
            await asyncio.shield(self._retry)

    async def close(self) -> None:
        """Stops retrying (queued deletions are abandoned: their copies expire by TTL)."""
        task, self._retry = self._retry, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
