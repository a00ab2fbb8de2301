"""Smoke tests of bench/signin.py's pure helpers: latency summaries, ratios and the table.

No assertion here is about speed.
"""

from __future__ import annotations

import math

from bench.signin import format_table, latency_summary, ratio


def test_latency_summary_counts_rate_percentiles_and_unexpected_statuses() -> None:
    samples = [float(n) for n in range(100, 0, -1)]  # 1..100 ms, unsorted
    got = latency_summary(samples, 4.0, statuses={401: 98, 500: 2}, expect=401, errors=3)
    assert got["count"] == 100
    assert got["rate"] == 25.0
    assert (got["p50_ms"], got["p99_ms"], got["max_ms"]) == (50.0, 99.0, 100.0)
    assert got["statuses"] == {"401": 98, "500": 2}
    assert (got["unexpected"], got["errors"]) == (2, 3)


def test_latency_summary_of_nothing_has_no_percentiles() -> None:
    got = latency_summary([], 0.0)
    assert (got["count"], got["rate"], got["max_ms"]) == (0, 0.0, None)
    assert math.isnan(got["p50_ms"])
    assert math.isnan(got["p99_ms"])


def test_ratio_is_nan_without_a_denominator() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(math.nan, 1.0))


def test_format_table_shows_missing_figures_as_dashes() -> None:
    row = latency_summary([1.0, 2.0], 1.0) | {"label": "probe", "max_ms": None}
    text = format_table([row, {**row, "label": "sign-in", "gateway_cpu_ms_per_op": 27.5}])
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("probe") and lines[2].rstrip().endswith("-")
    assert lines[3].rstrip().endswith("27.500")
