"""Tallied metrics: cheap per count, exact at every scrape of the process, and a histogram
tally adds exactly what `Histogram.observe` would have (bucket by bucket, and the sum)."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest

from gateway.observability import tally
from gateway.observability.metrics import CACHE_LOOKUPS, HTTP_DURATION, CacheCounter
from gateway.observability.tally import counter_tally, flush_tallies, histogram_tally


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
    for _ in range(tally.BATCH):
        counter.hit()
    assert _hits("unit-batch") == tally.BATCH
    counter.miss()
    assert CACHE_LOOKUPS.labels(cache="unit-batch", result="miss")._value.get() == 1
    counter.hit()
    flush_tallies()
    assert _hits("unit-batch") == tally.BATCH + 1


def test_one_tally_per_metric_child() -> None:
    registry = CollectorRegistry()
    counter = Counter("unit_same_total", "x", ["a"], registry=registry)
    assert counter_tally(counter.labels("1")) is counter_tally(counter.labels("1"))
    assert counter_tally(counter.labels("1")) is not counter_tally(counter.labels("2"))


def test_histogram_tally_adds_what_observe_would() -> None:
    registry = CollectorRegistry()
    buckets = (0.001, 0.01, 0.1, 1.0)
    direct = Histogram("unit_direct_seconds", "x", buckets=buckets, registry=registry)
    tallied = Histogram("unit_tallied_seconds", "x", buckets=buckets, registry=registry)
    values = [0.0, 0.001, 0.0010001, 0.005, 0.01, 0.5, 1.0, 3.0, 250.0, 0.1]
    counted = histogram_tally(tallied)
    for value in values:
        direct.observe(value)
        counted.observe(value)
    assert registry.get_sample_value("unit_tallied_seconds_count") == 0
    flush_tallies()

    def samples(name: str) -> list[tuple[str, dict[str, str], float]]:
        metric = next(m for m in registry.collect() if m.name == name)
        return [(s.name.removeprefix(name), s.labels, s.value) for s in metric.samples]

    direct_samples = [s for s in samples("unit_direct_seconds") if s[0] != "_created"]
    tallied_samples = [s for s in samples("unit_tallied_seconds") if s[0] != "_created"]
    assert tallied_samples == direct_samples
    assert registry.get_sample_value("unit_tallied_seconds_count") == len(values)


def test_a_scrape_sees_tallied_request_durations() -> None:
    child = HTTP_DURATION.labels("unit-route", "2xx")
    histogram_tally(child).observe(0.002)
    text = generate_latest(REGISTRY).decode()
    line = 'gateway_http_request_duration_seconds_count{route="unit-route",status_class="2xx"}'
    assert f"{line} 1.0" in text
