"""GCRA and the failure penalty as pure functions: exact sequences on integer microseconds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.ratelimit.gcra import (
    MICROS,
    emission_interval,
    gcra,
    to_micros,
    window_seconds,
)
from gateway.ratelimit.penalty import PenaltyPolicy, delay_after, wait_us

T0 = 1_700_000_000 * MICROS


def run(n: int, now: int, per_second: float, burst: int, tat: int | None = None) -> list[bool]:
    """`n` requests at the same instant; the allowed flags, threading the TAT through."""
    flags = []
    for _ in range(n):
        decision = gcra(tat, now, per_second, burst)
        tat = decision.tat
        flags.append(decision.result.allowed)
    return flags


def test_from_idle_exactly_burst_pass_then_the_next_is_limited() -> None:
    assert run(11, T0, per_second=2.0, burst=10) == [True] * 10 + [False]


def test_remaining_counts_down_to_zero_and_reset_grows() -> None:
    tat = None
    seen = []
    for _ in range(3):
        decision = gcra(tat, T0, 1.0, 3)
        tat = decision.tat
        seen.append((decision.result.remaining, decision.result.reset_after))
    assert seen == [(2, 1.0), (1, 2.0), (0, 3.0)]


def test_the_limited_request_waits_one_interval_and_changes_nothing() -> None:
    tat = None
    for _ in range(5):
        tat = gcra(tat, T0, 4.0, 5).tat
    limited = gcra(tat, T0, 4.0, 5)
    assert not limited.result.allowed
    assert limited.result.retry_after == 0.25
    assert limited.result.remaining == 0
    assert limited.result.reset_after == 1.25
    assert limited.tat == tat


def test_one_more_request_per_interval_after_the_burst() -> None:
    tat = None
    for _ in range(3):
        tat = gcra(tat, T0, 10.0, 3).tat
    just_before = gcra(tat, T0 + 100_000 - 1, 10.0, 3)
    assert not just_before.result.allowed
    assert just_before.result.retry_after == pytest.approx(1e-6)
    at_interval = gcra(tat, T0 + 100_000, 10.0, 3)
    assert at_interval.result.allowed
    assert at_interval.result.remaining == 0
    assert not gcra(at_interval.tat, T0 + 100_000, 10.0, 3).result.allowed


def test_an_idle_bucket_is_full_again_after_reset_after() -> None:
    tat = None
    for _ in range(4):
        tat = gcra(tat, T0, 2.0, 4).tat
    assert tat == T0 + 2 * MICROS
    assert run(5, T0 + 2 * MICROS, 2.0, 4, tat) == [True] * 4 + [False]


def test_cost_charges_several_and_a_cost_above_burst_is_always_limited() -> None:
    decision = gcra(None, T0, 1.0, 10, cost=4)
    assert decision.result.remaining == 6
    assert not gcra(None, T0, 1.0, 3, cost=4).result.allowed
    assert gcra(None, T0, 1.0, 3, cost=0).result.remaining == 3


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="burst"):
        gcra(None, T0, 1.0, 0)
    with pytest.raises(ValueError, match="positive"):
        emission_interval(0.0)


def test_units() -> None:
    assert emission_interval(3.0) == 333_333
    assert emission_interval(1 / 3600) == 3600 * MICROS
    assert to_micros(1.5) == 1_500_000
    assert window_seconds(5, 1 / 60) == 300
    assert window_seconds(20, 10.0) == 2
    assert window_seconds(1, 100.0) == 1


@given(
    burst=st.integers(1, 50),
    per_second=st.sampled_from([0.1, 1.0, 3.0, 7.0, 100.0, 1 / 60]),
    offset=st.integers(0, 10**9),
)
def test_burst_is_exact_for_any_rate(burst: int, per_second: float, offset: int) -> None:
    assert run(burst + 1, T0 + offset, per_second, burst) == [True] * burst + [False]


def test_penalty_starts_at_the_threshold_doubles_and_is_capped() -> None:
    policy = PenaltyPolicy()
    delays = [delay_after(n, policy) / MICROS for n in range(1, 20)]
    assert delays[:4] == [0, 0, 0, 0]
    assert delays[4:10] == [1, 2, 4, 8, 16, 32]
    assert max(delays) == 900
    assert delay_after(10**6, policy) == 900 * MICROS


def test_penalty_wait_counts_from_the_last_failure_and_decays() -> None:
    policy = PenaltyPolicy()
    assert wait_us(6, T0, T0, policy) == 2 * MICROS
    assert wait_us(6, T0, T0 + MICROS, policy) == MICROS
    assert wait_us(6, T0, T0 + 3 * MICROS, policy) == 0
    assert wait_us(50, T0, T0 + 3600 * MICROS, policy) == 0
