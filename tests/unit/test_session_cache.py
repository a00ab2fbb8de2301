"""Unit tests for gateway.sessions.cache: the LRU and age bounds and invalidation."""

from __future__ import annotations

import pytest

from gateway.sessions.cache import CacheEntry, SessionCache, invalidation
from gateway.sessions.models import SessionRecord


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(sid: str, user: str = "u_1", tenant: str = "t_a", at: float = 1000.0) -> CacheEntry:
    record = SessionRecord(
        id=sid, token_hash="h" + sid, user_id=user, tenant_id=tenant, created_at=at,
        last_seen_at=at, expires_at=at + 100, idle_timeout=60,
    )  # fmt: skip
    return CacheEntry(record, loaded_at=at, stored_last_seen=at)


def test_size_bound_evicts_the_least_recently_used() -> None:
    clock = Clock()
    cache = SessionCache(max_entries=2, ttl=10, clock=clock)
    cache.put("a", entry("a"))
    cache.put("b", entry("b"))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", entry("c"))
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") is not None
    assert cache.get("c") is not None


def test_put_of_an_existing_key_replaces_without_growing() -> None:
    cache = SessionCache(max_entries=2, ttl=10, clock=Clock())
    cache.put("a", entry("a"))
    cache.put("a", entry("a2"))
    assert len(cache) == 1
    got = cache.get("a")
    assert got is not None
    assert got.record.id == "a2"


def test_age_bound_counts_from_the_load_with_the_injected_clock() -> None:
    clock = Clock()
    cache = SessionCache(max_entries=10, ttl=1.0, clock=clock)
    cache.put("a", entry("a", at=clock.now))
    clock.now += 0.999
    assert cache.get("a") is not None  # using an entry does not extend its age
    clock.now += 0.001
    assert cache.get("a") is None
    assert len(cache) == 0


def test_a_load_that_raced_an_invalidation_is_not_cached() -> None:
    cache = SessionCache(max_entries=10, ttl=10, clock=Clock())
    generation = cache.generation
    cache.drop_where(lambda r: r.id == "a")  # a revocation lands while the load is in flight
    assert cache.put("a", entry("a"), generation) is False
    assert cache.get("a") is None
    assert cache.put("a", entry("a"), cache.generation) is True


def test_drop_where_removes_only_matching_sessions() -> None:
    cache = SessionCache(max_entries=10, ttl=10, clock=Clock())
    cache.put("a", entry("a", user="u_1", tenant="t_a"))
    cache.put("b", entry("b", user="u_2", tenant="t_a"))
    cache.put("c", entry("c", user="u_1", tenant="t_b"))
    assert cache.drop_where(lambda r: r.tenant_id == "t_a") == 2
    assert cache.get("c") is not None
    cache.clear()
    assert len(cache) == 0


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        SessionCache(max_entries=0)


@pytest.mark.parametrize(
    ("topic", "payload", "dropped"),
    [
        ("session.revoked", {"ids": ["a", "c"]}, {"a", "c"}),
        ("user.sessions_revoked", {"user_id": "u_2"}, {"b"}),
        ("tenant.sessions_revoked", {"tenant_id": "t_b"}, {"c"}),
        ("session.revoked", {"ids": "a"}, {"a", "b", "c"}),  # malformed: drop everything
        ("user.sessions_revoked", {}, {"a", "b", "c"}),
        ("policy.changed", {"ids": ["a"]}, set()),
    ],
)
def test_bus_notices_map_to_invalidations(
    topic: str, payload: dict[str, object], dropped: set[str]
) -> None:
    cache = SessionCache(max_entries=10, ttl=10, clock=Clock())
    cache.put("a", entry("a", user="u_1", tenant="t_a"))
    cache.put("b", entry("b", user="u_2", tenant="t_a"))
    cache.put("c", entry("c", user="u_1", tenant="t_b"))
    predicate = invalidation(topic, payload)
    if predicate is not None:
        cache.drop_where(predicate)
    assert {k for k in "abc" if cache.get(k) is None} == dropped
