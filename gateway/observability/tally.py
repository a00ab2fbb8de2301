"""Batched counting for the metrics the hot path touches on every request.

A Prometheus `inc()` or `observe()` takes a lock and walks Python code (about a microsecond
each, six of them per proxied request). A tally counts in plain integers instead and adds
its counts to the Prometheus metric in one call per batch.

Guarantees: a scrape of this process sees every count made before it (a collector registered
before any metric flushes every tally first); across `--workers`, where another process
serves the scrape, counts are at most `FLUSH_SECONDS` behind (the app flushes every second,
and at shutdown); a tally also flushes itself after `BATCH` counts. Tallies are memoized per
metric child, so a label set has one tally whatever asks for it.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Final

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

FLUSH_SECONDS: Final = 1.0
BATCH: Final = 1024


class CounterTally:
    """Counts for one counter child, added to it in batches."""

    __slots__ = ("child", "pending")

    def __init__(self, child: Counter) -> None:
        self.child = child
        self.pending = 0

    def inc(self) -> None:
        """Counts one event."""
        self.pending += 1
        if self.pending >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Adds the counts made since the last flush to the counter."""
        pending, self.pending = self.pending, 0
        if pending:
            self.child.inc(pending)


class HistogramTally:
    """Observations for one histogram child: per-bucket counts and their sum, added in
    batches to the child's own bucket and sum values (what its `observe` would have added,
    one observation at a time)."""

    __slots__ = ("bounds", "buckets", "child", "count", "counts", "total")

    def __init__(self, child: Histogram) -> None:
        self.child = child
        # The child's storage: non-cumulative bucket values and the sum (prometheus_client
        # keeps these on every child; tests/unit/test_tally.py pins the equivalence).
        child_any: Any = child
        self.bounds: list[float] = list(child_any._upper_bounds)
        self.buckets: list[Any] = list(child_any._buckets)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Records one observation (the first bucket whose bound is ≥ the value, as
        `Histogram.observe` does)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1
        if self.count >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Adds the observations made since the last flush to the histogram."""
        if not self.count:
            return
        counts, self.counts = self.counts, [0] * len(self.bounds)
        total, self.total, self.count = self.total, 0.0, 0
        child_any: Any = self.child
        child_any._sum.inc(total)
        for bucket, n in zip(self.buckets, counts, strict=True):
            if n:
                bucket.inc(n)


_COUNTERS: dict[Counter, CounterTally] = {}  # metric children hash by identity
_HISTOGRAMS: dict[Histogram, HistogramTally] = {}


def counter_tally(child: Counter) -> CounterTally:
    """The tally of a counter child (one per child)."""
    found = _COUNTERS.get(child)
    if found is None:
        found = _COUNTERS[child] = CounterTally(child)
    return found


def histogram_tally(child: Histogram) -> HistogramTally:
    """The tally of a histogram child (one per child)."""
    found = _HISTOGRAMS.get(child)
    if found is None:
        found = _HISTOGRAMS[child] = HistogramTally(child)
    return found


def flush_tallies() -> None:
    """Brings every metric up to date with its tally."""
    for counter in list(_COUNTERS.values()):
        counter.flush()
    for histogram in list(_HISTOGRAMS.values()):
        histogram.flush()


class _FlushBeforeScrape(Collector):
    """Registered before every metric: a scrape of this process sees every count."""

    def collect(self) -> list[Metric]:
        flush_tallies()
        return []


REGISTRY.register(_FlushBeforeScrape())  # collectors are collected in registration order
