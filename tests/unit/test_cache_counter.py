"""Batched cache-hit counting: cheap per hit, exact at every scrape of the process."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest

from gateway.observability.metrics import CACHE_LOOKUPS, CacheCounter, flush_cache_counters


def _hits(cache: str) -> float:
    return CACHE_LOOKUPS.labels(cache=cache, result="hit")._value.get()


def test_hits_are_exact_at_scrape_time() -> None:
    counter = CacheCounter("unit-scrape")
    for _ in range(3):
        counter.hit()
    assert _hits("unit-scrape") == 0  # batched, not yet added
    text = generate_latest(REGISTRY).decode()
    assert 'gateway_cache_lookups_total{cache="unit-scrape",result="hit"} 3.0' in text


def test_a_full_batch_is_added_at_once_and_misses_immediately() -> None:
    counter = CacheCounter("unit-batch")
    for _ in range(CacheCounter.HIT_BATCH):
        counter.hit()
    assert _hits("unit-batch") == CacheCounter.HIT_BATCH
    counter.miss()
    assert CACHE_LOOKUPS.labels(cache="unit-batch", result="miss")._value.get() == 1
    counter.hit()
    flush_cache_counters()
    assert _hits("unit-batch") == CacheCounter.HIT_BATCH + 1
