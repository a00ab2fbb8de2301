"""Short-lived caches of tenants, users and memberships for the hot path.

A proxied request must not query the database for the tenant, the user's email and their
roles on every call. Entries live at most `ttl` seconds (so a change made by another process
is seen within that bound even without the change bus) and are dropped at once when the
bus announces a change. Negative answers are cached too, for the same bound, so that a flood
of unknown slugs cannot turn into a flood of queries. A session's whole standing in a tenant
(tenant, user, roles, operator flag) is also remembered as one entry (`membership`), valid
until the oldest of the entries it was built from expires; a lookup it answers counts as one
directory cache hit. Concurrent misses on one key share a single read of the store.
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, NamedTuple, TypeVar

from gateway.identity.models import ApiKeyPrincipal, Tenant, User
from gateway.identity.service import IdentityService
from gateway.observability.metrics import DIRECTORY_CACHE
from gateway.storage.ports import BUS_DISCONNECTED, BUS_RESYNC, DEGRADED_CACHE_TTL
from gateway.storage.singleflight import SingleFlight

K = TypeVar("K")
V = TypeVar("V")

MEMBERSHIP_CHANGED = "member.changed"  # {"tenant_id": str, "user_id": str}
API_KEY_REVOKED = "apikey.revoked"  # {"key_id": str}
TENANT_CHANGED = "tenant.changed"  # {"tenant_id": str}


class TtlCache(Generic[K, V]):
    """An LRU map whose entries expire `ttl` seconds after they were loaded.

    Concurrent misses on one key share a single `load()` (`SingleFlight`). A load that an
    invalidation (`drop`, `clear`) overtook is not cached, and nobody joins it afterwards.
    """

    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float]) -> None:
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self.ttl = ttl
        self.base_ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._flights: SingleFlight[K, V] = SingleFlight()
        self._epoch = 0  # bumped by every invalidation

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value if fresh, else `load()`'s result (cached, even when None)."""
        now = self.clock()
        hit = self._data.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            self._data.move_to_end(key)
            DIRECTORY_CACHE.hit()
            return hit[1]
        DIRECTORY_CACHE.miss()
        return await self._flights.run(key, lambda: self._load(key, load, now, self._epoch))

    async def _load(self, key: K, load: Callable[[], Awaitable[V]], now: float, epoch: int) -> V:
        value = await load()
        # SECURITY: a change announced while this was read may concern it: not kept.
        if epoch == self._epoch:
            self._data[key] = (now, value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
        return value

    def loaded_at(self, key: K) -> float:
        """When `key`'s entry was loaded (-inf when there is none: nothing built on it is fresh)."""
        hit = self._data.get(key)
        return hit[0] if hit is not None else float("-inf")

    def drop(self, predicate: Callable[[K], bool]) -> None:
        """Forgets every entry whose key matches, and every load in flight."""
        self._invalidate()
        for key in [k for k in self._data if predicate(k)]:
            del self._data[key]

    def clear(self) -> None:
        """Forgets everything, loads in flight included."""
        self._invalidate()
        self._data.clear()

    def _invalidate(self) -> None:
        self._epoch += 1
        self._flights.forget()


class TenantMember(NamedTuple):
    """A user's standing in one tenant: what a session's principal is made of."""

    tenant: Tenant
    user: User
    roles: tuple[str, ...]
    is_operator: bool


class NoMembership(enum.Enum):
    """Why `Directory.membership` found none."""

    TENANT_UNKNOWN = "tenant-unknown"
    NOT_A_MEMBER = "not-a-member"


MEMBERSHIP_MEMO_ENTRIES = 100_000
API_KEY_CACHE_SECONDS = 1
"""The longest a verified API key is reused without asking the store: a key that expires
(no bus notice for that) stops working within it."""


class Directory:
    """Cached reads of the identity service for the request path."""

    def __init__(
        self, identity: IdentityService, ttl: float = 1.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.identity = identity
        self.ttl = ttl
        self._clock = clock
        # (slug or None, tenant id or "", user id) -> (expires, membership); see `membership`.
        self._members: dict[tuple[str | None, str, str], tuple[float, TenantMember]] = {}
        self._generation = 0
        self._slugs: TtlCache[str, Tenant | None] = TtlCache(ttl, 10_000, clock)
        self._tenants: TtlCache[str, Tenant | None] = TtlCache(ttl, 10_000, clock)
        self._users: TtlCache[str, User | None] = TtlCache(ttl, 50_000, clock)
        self._roles: TtlCache[tuple[str, str], tuple[str, ...] | None] = TtlCache(
            ttl, 100_000, clock
        )
        self._operators: TtlCache[str, bool] = TtlCache(ttl, 10_000, clock)
        self._api_keys: TtlCache[str, ApiKeyPrincipal | None] = TtlCache(
            min(ttl, API_KEY_CACHE_SECONDS), 10_000, clock
        )

    async def tenant_by_slug(self, slug: str) -> Tenant | None:
        return await self._slugs.get(slug, lambda: self.identity.tenant_by_slug(slug))

    async def tenant_by_id(self, tenant_id: str) -> Tenant | None:
        return await self._tenants.get(tenant_id, lambda: self.identity.tenant_by_id(tenant_id))

    async def user(self, user_id: str) -> User | None:
        return await self._users.get(user_id, lambda: self.identity.user_by_id(user_id))

    async def roles(self, tenant_id: str, user_id: str) -> tuple[str, ...] | None:
        """The user's roles in the tenant; None when they are not a member."""
        return await self._roles.get(
            (tenant_id, user_id), lambda: self.identity.membership_roles(tenant_id, user_id)
        )

    async def is_operator(self, user_id: str) -> bool:
        return await self._operators.get(user_id, lambda: self.identity.is_operator(user_id))

    async def membership(
        self, tenant_slug: str | None, tenant_id: str, user_id: str
    ) -> TenantMember | NoMembership:
        """The user's membership of the tenant named by `tenant_slug` (None: `tenant_id`).

        The same answer as `tenant_by_slug`/`tenant_by_id`, `roles`, `user` and `is_operator`
        called in turn, in one lookup on the hot path: a found membership is remembered until
        the oldest cache entry it was built from expires, and forgotten with every change-bus
        notice, so it is never staler than those entries would be. Refusals are not remembered.
        """
        key = (tenant_slug, "" if tenant_slug is not None else tenant_id, user_id)
        hit = self._members.get(key)
        if hit is not None and self._clock() < hit[0]:
            DIRECTORY_CACHE.hit()
            return hit[1]
        generation = self._generation
        if tenant_slug is not None:
            tenant = await self.tenant_by_slug(tenant_slug)
        else:
            tenant = await self.tenant_by_id(tenant_id)
        if tenant is None:
            return NoMembership.TENANT_UNKNOWN
        roles = await self.roles(tenant.id, user_id)
        user = await self.user(user_id)
        if not roles or user is None:
            return NoMembership.NOT_A_MEMBER
        found = TenantMember(tenant, user, roles, await self.is_operator(user_id))
        # SECURITY: a notice that arrived while this was read may concern what was read.
        if generation == self._generation:
            self._remember(key, found)
        return found

    def _remember(self, key: tuple[str | None, str, str], found: TenantMember) -> None:
        """Keeps `found` until the oldest entry it was built from expires."""
        slug, tenant_id, user_id = key
        tenant_cache = self._slugs if slug is not None else self._tenants
        loaded = min(
            tenant_cache.loaded_at(slug if slug is not None else tenant_id),
            self._roles.loaded_at((found.tenant.id, user_id)),
            self._users.loaded_at(user_id),
            self._operators.loaded_at(user_id),
        )
        ttl = min(tenant_cache.ttl, self._roles.ttl, self._users.ttl, self._operators.ttl)
        if len(self._members) >= MEMBERSHIP_MEMO_ENTRIES:
            self._members.clear()
        self._members[key] = (loaded + ttl, found)

    async def api_key(self, token: str) -> ApiKeyPrincipal | None:
        """The verified principal of an API key, cached by the SHA-256 of the token only."""
        # SECURITY: the cache key is a hash; the raw key is never held beyond this call.
        digest = hashlib.sha256(token.encode()).hexdigest()
        return await self._api_keys.get(digest, lambda: self.identity.authenticate_api_key(token))

    def _caches(self) -> tuple[TtlCache[Any, Any], ...]:
        return (
            self._slugs, self._tenants, self._users, self._roles, self._operators, self._api_keys,
        )  # fmt: skip

    async def on_change(self, topic: str, payload: Mapping[str, Any]) -> None:
        """Change-bus subscriber: drops what the announced change affects; on a lost bus,
        bounds every cache's age tightly; on resync, forgets everything. Every notice also
        forgets the remembered memberships."""
        self._generation += 1
        self._members.clear()
        if topic == BUS_DISCONNECTED:
            for cache in self._caches():
                cache.ttl = min(cache.base_ttl, DEGRADED_CACHE_TTL)
        elif topic == BUS_RESYNC:
            for cache in self._caches():
                cache.clear()
                cache.ttl = cache.base_ttl
        elif topic == API_KEY_REVOKED:
            self._api_keys.clear()  # keyed by hash: drop all, revocations are rare
        elif topic == MEMBERSHIP_CHANGED:
            key = (payload.get("tenant_id"), payload.get("user_id"))
            self._roles.drop(lambda k: k == key)
        elif topic == TENANT_CHANGED:
            self._slugs.clear()
            self._tenants.drop(lambda k: k == payload.get("tenant_id"))
