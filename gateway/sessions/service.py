"""The session service: issuing, authenticating, revoking and rotating sessions.

Guarantees:
- every session starts with a new token (a presented cookie is never adopted) and the store
  only ever sees the token's SHA-256;
- `authenticate` accepts a token only while its session is unrevoked and inside both its
  idle and absolute deadlines, judged by the injected clock;
- a revocation made here is in effect in this process when the call returns, in every process
  on the bus as soon as the notice arrives, and everywhere within `cache_ttl` regardless;
- a store that cannot be read raises `StoreUnavailable` (callers answer 503, fail closed).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from gateway.audit.events import Actor, AuditEvent, RequestContext
from gateway.config.sections import CookieConfig
from gateway.sessions import tokens
from gateway.sessions.cache import CacheEntry, Predicate, SessionCache, by_ids, invalidation
from gateway.sessions.models import (
    SESSION_REVOKED,
    SESSIONS_CHANGED,
    TENANT_SESSIONS_REVOKED,
    USER_SESSIONS_REVOKED,
    AuthMethod,
    SessionRecord,
    session_event,
)
from gateway.storage.ports import (
    BUS_DISCONNECTED,
    BUS_RESYNC,
    DEGRADED_CACHE_TTL,
    ChangeBus,
    SessionStore,
    StoreUnavailable,
)
from gateway.storage.singleflight import SingleFlight

log = logging.getLogger(__name__)

Clock = Callable[[], float]
HALF_SESSION_LIFETIME = 300  # seconds a half-session (password done, MFA pending) lives
MIN_CSRF_KEY_BYTES = 32


SIGNOUT = "signout"

LAST_SEEN_STEP = 1.0
"""Seconds between updates of a cached session's `last_seen_at` (a new record each time);
the idle timeout is minutes, so a session may look idle up to this much earlier."""


class SessionService:
    """Sessions over a `SessionStore`, with a local cache invalidated through a `ChangeBus`.

    The hot path (`authenticate`) reads the cache; concurrent misses on one token share a
    single store read (never one begun before an invalidation); it writes to the store at
    most once per `touch_interval` (or per 10% of the idle timeout, if shorter) per session.
    """

    def __init__(
        self,
        store: SessionStore,
        bus: ChangeBus,
        cookie_config: CookieConfig,
        csrf_key: bytes,
        clock: Clock = time.time,
        *,
        cache_size: int = 10_000,
        cache_ttl: float = 1.0,
        touch_interval: float = 60.0,
    ) -> None:
        # SECURITY: a short key would make CSRF tokens guessable offline.
        if len(csrf_key) < MIN_CSRF_KEY_BYTES:
            raise ValueError(f"csrf_key must be at least {MIN_CSRF_KEY_BYTES} bytes")
        self._store = store
        self._bus = bus
        self._config = cookie_config
        self._csrf_key = csrf_key
        self._clock = clock
        self._touch_interval = touch_interval
        self.cache = SessionCache(cache_size, cache_ttl, clock)
        self._cache_ttl = cache_ttl
        # Keyed by (token hash, cache generation): a read begun before an invalidation is
        # never joined by a request that came after it.
        self._loads: SingleFlight[tuple[str, int], CacheEntry | None] = SingleFlight()
        self._unsubscribe = bus.subscribe(self._on_change)

    def close(self) -> None:
        """Stops listening to the bus."""
        self._unsubscribe()

    async def create(
        self,
        user_id: str,
        tenant_id: str,
        *,
        auth_method: AuthMethod,
        ip: str | None,
        user_agent: str | None,
        mfa: bool = False,
        mfa_pending: bool = False,
        audit: AuditEvent | None = None,
    ) -> tuple[str, SessionRecord]:
        """A new session and its token (shown once: only its hash is stored).

        A half-session (`mfa_pending`) lives at most `HALF_SESSION_LIFETIME` seconds.
        """
        now = self._clock()
        # SECURITY: session fixation: sign-in always mints a new token, never reuses a cookie.
        token = tokens.new_token()
        lifetime = self._config.lifetime
        record = SessionRecord(
            id=tokens.new_session_id(),
            token_hash=tokens.hash_token(token),
            user_id=user_id,
            tenant_id=tenant_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + (min(lifetime, HALF_SESSION_LIFETIME) if mfa_pending else lifetime),
            idle_timeout=self._config.idle_timeout,
            auth_method=auth_method,
            mfa=mfa,
            mfa_pending=mfa_pending,
            ip=ip,
            user_agent=user_agent,
        )
        await self._store.create(record, audit)
        return token, record

    async def rotate(
        self,
        record: SessionRecord,
        actor: Actor,
        ctx: RequestContext,
        *,
        reason: str,
        mfa: bool | None = None,
    ) -> tuple[str, SessionRecord] | None:
        """Replaces `record` by a new session (new token, new public id) and revokes it.

        Used at MFA upgrade, MFA step-up and any role change, so a token seen before the
        privilege change is useless after it. The absolute deadline is kept, except that
        completing MFA on a half-session starts the full lifetime. `mfa=True` means a code was
        proven just now: the new session is MFA-verified as of now (`mfa_at`); otherwise
        `mfa_at` is carried over. None when `record` was no longer active.
        """
        now = self._clock()
        token = tokens.new_token()
        upgraded = mfa is True and record.mfa_pending
        new = dataclasses.replace(
            record,
            id=tokens.new_session_id(),
            token_hash=tokens.hash_token(token),
            created_at=now,
            last_seen_at=now,
            expires_at=now + self._config.lifetime if upgraded else record.expires_at,
            mfa=record.mfa if mfa is None else mfa,
            mfa_pending=record.mfa_pending and not upgraded,
            # SECURITY: only a code proven now refreshes `mfa_at`; step-up for admin actions
            # trusts it, so a privilege-change rotation must never make an old session fresh.
            mfa_at=now if mfa is True else record.mfa_at,
            rotate_pending=False,
            ip=ctx.ip or record.ip,
            user_agent=ctx.user_agent or record.user_agent,
        )
        details = {"reason": reason, "new_session_id": new.id}
        event = session_event(
            self._clock(), "session.rotate", actor, ctx, record.tenant_id, record.id, details
        )
        rotated = await self._store.rotate(record.id, new, event)
        await self._announce(SESSION_REVOKED, {"ids": [record.id]}, by_ids([record.id]))
        return (token, new) if rotated else None

    async def request_rotation(self, user_id: str, tenant_id: str | None = None) -> list[str]:
        """After a privilege change: the user's sessions rotate their token on next use.

        The cached copies are dropped at once (here and, through the bus, everywhere), so the
        next request reads the flag and the new roles.
        """
        ids = await self._store.mark_for_rotation(user_id, tenant_id)
        if ids:
            await self._announce(SESSIONS_CHANGED, {"ids": ids}, by_ids(ids))
        return ids

    async def authenticate(self, token: str | None) -> SessionRecord | None:
        """The valid session for `token`, else None; `StoreUnavailable` if it can't be read.

        Half-sessions (`mfa_pending`) are returned too: everything but the MFA step refuses them.
        """
        # SECURITY: malformed tokens are refused before hashing, caching or any store access.
        if token is None or not tokens.is_well_formed_token(token):
            return None
        token_hash = tokens.hash_token(token)
        now = self._clock()
        entry = self.cache.get(token_hash) or await self._loads.run(
            # SECURITY: the generation in the key: no request joins a read that a
            # revocation has overtaken (it would get the record as it was before).
            (token_hash, self.cache.generation),
            lambda: self._load(token_hash, now),
        )
        if entry is None:
            return None
        # SECURITY: revocation, idle and absolute expiry are re-checked on every request.
        if not entry.record.is_valid(now):
            self.cache.drop(token_hash)
            return None
        if now - entry.record.last_seen_at >= LAST_SEEN_STEP:
            entry.record = dataclasses.replace(entry.record, last_seen_at=now)
        await self._maybe_touch(entry, now)
        return entry.record

    async def _load(self, token_hash: str, now: float) -> CacheEntry | None:
        """Reads the store; caches a valid record unless an invalidation raced the read."""
        generation = self.cache.generation
        record = await self._store.get_by_token_hash(token_hash)
        if record is None:
            return None
        entry = CacheEntry(record, loaded_at=now, stored_last_seen=record.last_seen_at)
        if record.is_valid(now):
            self.cache.put(token_hash, entry, generation)
        return entry

    async def _maybe_touch(self, entry: CacheEntry, now: float) -> None:
        """Persists last-seen when due; a failed touch is logged, never fatal."""
        due = min(self._touch_interval, entry.record.idle_timeout * 0.1)
        previous = entry.stored_last_seen
        if now - previous < due:
            return
        entry.stored_last_seen = now  # claim it first: concurrent requests do not all write
        try:
            await self._store.touch(entry.record.id, now)
        except StoreUnavailable:
            entry.stored_last_seen = previous
            log.warning("session touch failed", extra={"action": "session.touch"})

    async def revoke(
        self,
        session_id: str,
        actor: Actor,
        ctx: RequestContext,
        *,
        tenant_id: str | None,
        reason: str | None = None,
    ) -> bool:
        """Revokes one session by public id; `tenant_id` (None: platform scope) must own it."""
        record = await self._store.get(session_id)
        # SECURITY: a tenant admin cannot reach another tenant's session; it looks absent.
        if record is None or (tenant_id is not None and record.tenant_id != tenant_id):
            return False
        return await self._revoke_record(record, actor, ctx, reason)

    async def revoke_token(
        self, token: str, actor: Actor, ctx: RequestContext, *, reason: str | None = None
    ) -> bool:
        """Revokes the session a cookie value names (sign-out); False if there is none."""
        if not tokens.is_well_formed_token(token):
            return False
        record = await self._store.get_by_token_hash(tokens.hash_token(token))
        if record is None:
            return False
        return await self._revoke_record(record, actor, ctx, reason)

    async def _revoke_record(
        self, record: SessionRecord, actor: Actor, ctx: RequestContext, reason: str | None
    ) -> bool:
        details = {"reason": reason}
        # A user ending their own session is a sign-out; anything else is an administrative
        # revocation. Both are audited.
        action = "auth.signout" if reason == SIGNOUT else "session.revoke"
        event = session_event(
            self._clock(), action, actor, ctx, record.tenant_id, record.id, details
        )
        done = await self._store.revoke(record.id, self._clock(), event)
        await self._announce(SESSION_REVOKED, {"ids": [record.id]}, by_ids([record.id]))
        return done

    async def revoke_user(
        self,
        user_id: str,
        actor: Actor,
        ctx: RequestContext,
        *,
        except_id: str | None = None,
        reason: str | None = None,
    ) -> list[str]:
        """Revokes all of a user's sessions (in every tenant) but `except_id`; their ids."""
        details = {"reason": reason, "except_id": except_id}
        event = session_event(
            self._clock(), "session.revoke_user", actor, ctx, None, user_id, details
        )
        ids = await self._store.revoke_all_for_user(user_id, self._clock(), event, except_id)
        # Invalidation by id: the kept session (except_id) stays cached.
        await self._announce(USER_SESSIONS_REVOKED, {"user_id": user_id}, by_ids(ids))
        return ids

    async def revoke_tenant(
        self, tenant_id: str, actor: Actor, ctx: RequestContext, *, reason: str | None = None
    ) -> list[str]:
        """Revokes every session whose tenant is `tenant_id`; their ids."""
        details = {"reason": reason}
        event = session_event(
            self._clock(), "session.revoke_tenant", actor, ctx, tenant_id, tenant_id, details
        )
        ids = await self._store.revoke_all_for_tenant(tenant_id, self._clock(), event)
        payload = {"tenant_id": tenant_id}
        await self._announce(TENANT_SESSIONS_REVOKED, payload, lambda r: r.tenant_id == tenant_id)
        return ids

    async def _announce(self, topic: str, payload: dict[str, Any], local: Predicate) -> None:
        """Drops matching local cache entries at once, then tells the other processes."""
        self.cache.drop_where(local)
        try:
            await self._bus.publish(topic, payload)
        except Exception:
            # The store already holds the revocation; other processes see it within cache_ttl.
            log.exception("change-bus publish failed", extra={"action": topic})

    async def _on_change(self, topic: str, payload: Mapping[str, Any]) -> None:
        if topic == BUS_DISCONNECTED:
            # SECURITY: revocations elsewhere cannot reach us now; trust cached copies briefly.
            self.cache.ttl = min(self._cache_ttl, DEGRADED_CACHE_TTL)
            return
        if topic == BUS_RESYNC:
            self.cache.clear()
            self.cache.ttl = self._cache_ttl
            return
        predicate = invalidation(topic, payload)
        if predicate is not None:
            self.cache.drop_where(predicate)

    def mfa_recent(self, record: SessionRecord, max_age: float) -> bool:
        """Whether a code was proven on `record` less than `max_age` seconds ago (this
        service's clock)."""
        return record.mfa_recent(self._clock(), max_age)

    def csrf_token(self, record: SessionRecord) -> str:
        """The `X-CSRF-Token` value for this session (changes when the session rotates)."""
        return tokens.csrf_token(self._csrf_key, record.token_hash)

    def check_csrf(self, record: SessionRecord, presented: str | None) -> bool:
        """True only for this session's CSRF token (constant-time)."""
        return tokens.verify_csrf(self._csrf_key, record.token_hash, presented)

    async def list_sessions(
        self, tenant_id: str | None, user_id: str | None
    ) -> list[SessionRecord]:
        """Active sessions; the caller decides whether a None tenant (all) is allowed."""
        return await self._store.list(tenant_id, user_id, now=self._clock())
