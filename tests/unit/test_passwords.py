"""Tests for gateway.identity.passwords: policy, Argon2id hashing, and event-loop behaviour."""

from __future__ import annotations

import asyncio
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import argon2
import pytest

from gateway.identity.passwords import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    Argon2Params,
    PasswordHasher,
    PasswordPolicyError,
    VerifyResult,
    check_password_policy,
)

# Small parameters keep most tests fast; one test below uses the production defaults.
FAST = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)
FASTER_BUT_DIFFERENT = Argon2Params(time_cost=2, memory_cost=16, parallelism=1)


@pytest.fixture
async def hasher() -> AsyncIterator[PasswordHasher]:
    h = PasswordHasher(FAST)
    yield h
    await h.close()


# --- policy ---------------------------------------------------------------------------------


def test_nine_characters_is_too_short() -> None:
    with pytest.raises(PasswordPolicyError) as exc:
        check_password_policy("xk7#pq2vz")
    assert exc.value.message == "password must be at least 10 characters"
    assert str(exc.value) == exc.value.message
    assert isinstance(exc.value, ValueError)


def test_exactly_ten_characters_is_ok() -> None:
    check_password_policy("xk7#pq2vzm")


def test_1025_characters_is_too_long() -> None:
    with pytest.raises(PasswordPolicyError) as exc:
        check_password_policy("a" * 1024 + "b")
    assert exc.value.message == "password must be at most 1024 characters"


def test_1024_characters_is_ok() -> None:
    check_password_policy("ab" * 512)


def test_huge_input_is_refused_as_too_long() -> None:
    with pytest.raises(PasswordPolicyError, match="at most"):
        check_password_policy("x" * 10_000_000)


@pytest.mark.parametrize(
    "password", ["1234567890", "qwertyuiop", "PASSWORD123", "ILoveYou123", "1Q2W3E4R5T"]
)
def test_common_password_is_refused_case_insensitively(password: str) -> None:
    with pytest.raises(PasswordPolicyError) as exc:
        check_password_policy(password)
    assert "common" in exc.value.message
    assert password not in exc.value.message


def test_common_password_compare_uses_nfkc() -> None:
    # Fullwidth digits normalize to ASCII "1234567890".
    with pytest.raises(PasswordPolicyError, match="common"):
        check_password_policy("".join(chr(0xFF10 + int(d)) for d in "1234567890"))


def test_email_equal_is_refused() -> None:
    with pytest.raises(PasswordPolicyError) as exc:
        check_password_policy("Alice.Smith@Example.com", email="alice.smith@example.com")
    assert exc.value.message == "password must not be the same as your email address"


def test_email_local_part_is_refused() -> None:
    with pytest.raises(PasswordPolicyError, match="email"):
        check_password_policy("ALICE.SMITHSON", email="alice.smithson@example.com")


def test_email_unrelated_password_is_ok() -> None:
    check_password_policy("correct horse battery", email="alice.smithson@example.com")


def test_email_without_at_sign_does_not_match_empty_local_part() -> None:
    check_password_policy("correct horse battery", email="not-an-email")


def test_unicode_length_is_counted_in_code_points_after_nfkc() -> None:
    # 10 emoji: 10 code points (20 UTF-16 units, 40 bytes) -> ok; 9 -> too short.
    check_password_policy("\U0001f600" * 10)
    with pytest.raises(PasswordPolicyError, match="at least"):
        check_password_policy("\U0001f600" * 9)
    # "e" + combining acute, 5 times: 10 raw code points but 5 after NFKC -> too short.
    decomposed = "e\u0301" * 5
    assert len(decomposed) == 10
    with pytest.raises(PasswordPolicyError, match="at least"):
        check_password_policy(decomposed)
    # Composed "é" 10 times is 10 code points -> ok.
    check_password_policy("\u00e9" * 10)


def test_common_list_is_shipped_and_substantial() -> None:
    text = (
        resources.files("gateway.identity")
        .joinpath("common_passwords.txt")
        .read_text(encoding="utf-8")
    )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    keys = [unicodedata.normalize("NFKC", line).casefold() for line in lines]
    assert len(lines) >= 500
    assert len(set(keys)) == len(keys), "duplicate entries"
    assert sum(len(k) >= MIN_PASSWORD_LENGTH for k in keys) >= 200
    assert all(len(k) <= MAX_PASSWORD_LENGTH for k in keys)


def test_policy_error_never_contains_the_password() -> None:
    secret = "hunter2"
    with pytest.raises(PasswordPolicyError) as exc:
        check_password_policy(secret)
    assert secret not in str(exc.value)
    assert secret not in repr(exc.value)
    assert exc.value.args == (exc.value.message,)


# --- hashing and verification ---------------------------------------------------------------


async def test_hash_verify_round_trip(hasher: PasswordHasher) -> None:
    stored = await hasher.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert await hasher.verify(stored, "correct horse battery staple") == VerifyResult(
        ok=True, needs_rehash=False
    )


async def test_hash_is_salted(hasher: PasswordHasher) -> None:
    assert await hasher.hash("same password!") != await hasher.hash("same password!")


async def test_wrong_password_is_not_ok(hasher: PasswordHasher) -> None:
    stored = await hasher.hash("correct horse battery staple")
    assert await hasher.verify(stored, "correct horse battery stapler") == VerifyResult(
        ok=False, needs_rehash=False
    )


async def test_verify_uses_nfkc(hasher: PasswordHasher) -> None:
    stored = await hasher.hash("caf\u00e9 au lait!")
    assert (await hasher.verify(stored, "cafe\u0301 au lait!")).ok


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "not a hash",
        "$argon2id$v=19$m=8,t=1,p=1$garbage",
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$2b$12$KIXQJvH1pN8bW0L5H7qS7eH0gY6n0C0u8u3kQ9Yt7GzvV7pQe9k1e",  # bcrypt
        "$argon2id$v=19$m=8,t=1,p=1$\u00e9\u00e9\u00e9$\u00e9\u00e9",  # non-ASCII
    ],
)
async def test_corrupt_hash_is_not_ok_and_does_not_raise(
    hasher: PasswordHasher, stored: str
) -> None:
    assert await hasher.verify(stored, "correct horse battery staple") == VerifyResult(
        ok=False, needs_rehash=False
    )


async def test_truncated_hash_is_not_ok(hasher: PasswordHasher) -> None:
    stored = await hasher.hash("correct horse battery staple")
    result = await hasher.verify(stored[:-5], "correct horse battery staple")
    assert result == VerifyResult(ok=False, needs_rehash=False)


async def test_lone_surrogate_password_does_not_raise(hasher: PasswordHasher) -> None:
    stored = await hasher.hash("abc\ud800defghijk")
    assert (await hasher.verify(stored, "abc\ud800defghijk")).ok
    assert not (await hasher.verify(stored, "abc\ud801defghijk")).ok


async def test_overlong_password_is_never_hashed_and_never_matches(
    hasher: PasswordHasher,
) -> None:
    with pytest.raises(PasswordPolicyError):
        await hasher.hash("a" * (MAX_PASSWORD_LENGTH + 1))
    stored = await hasher.hash("a" * MAX_PASSWORD_LENGTH)
    assert (await hasher.verify(stored, "a" * MAX_PASSWORD_LENGTH)).ok
    assert not (await hasher.verify(stored, "a" * (MAX_PASSWORD_LENGTH + 1))).ok


async def test_needs_rehash_when_params_change() -> None:
    low = PasswordHasher(FAST)
    high = PasswordHasher(FASTER_BUT_DIFFERENT)
    try:
        stored = await low.hash("correct horse battery staple")
        assert await high.verify(stored, "correct horse battery staple") == VerifyResult(
            ok=True, needs_rehash=True
        )
        # A wrong password never asks for a rehash.
        assert await high.verify(stored, "wrong horse battery staple") == VerifyResult(
            ok=False, needs_rehash=False
        )
        rehashed = await high.hash("correct horse battery staple")
        assert await high.verify(rehashed, "correct horse battery staple") == VerifyResult(
            ok=True, needs_rehash=False
        )
    finally:
        await low.close()
        await high.close()


async def test_verify_dummy_uses_a_dummy_hash_with_current_params(
    hasher: PasswordHasher,
) -> None:
    await hasher.verify_dummy("any password at all")
    dummy = hasher._dummy_hash
    assert dummy is not None
    params = argon2.extract_parameters(dummy)
    assert (params.type, params.time_cost, params.memory_cost, params.parallelism) == (
        argon2.Type.ID,
        FAST.time_cost,
        FAST.memory_cost,
        FAST.parallelism,
    )
    await hasher.verify_dummy("another password")
    assert hasher._dummy_hash is dummy, "dummy hash must be computed only once"


async def test_concurrent_first_verify_dummy_computes_one_dummy_hash() -> None:
    hashes = 0

    class Counting(PasswordHasher):
        def _hash_sync(self, password: str) -> str:
            nonlocal hashes
            hashes += 1
            return super()._hash_sync(password)

    h = Counting(FAST)
    try:
        await asyncio.gather(*(h.verify_dummy(f"password {i}") for i in range(5)))
    finally:
        await h.close()
    assert hashes == 1


async def test_default_params_round_trip_and_dummy() -> None:
    h = PasswordHasher()
    try:
        assert h.params == Argon2Params(time_cost=2, memory_cost=19456, parallelism=1)
        stored = await h.hash("correct horse battery staple")
        params = argon2.extract_parameters(stored)
        assert (params.type, params.time_cost, params.memory_cost, params.parallelism) == (
            argon2.Type.ID,
            2,
            19456,
            1,
        )
        assert await h.verify(stored, "correct horse battery staple") == VerifyResult(
            ok=True, needs_rehash=False
        )
        assert not (await h.verify(stored, "Correct horse battery staple")).ok
        await h.verify_dummy("correct horse battery staple")
    finally:
        await h.close()


def test_repr_does_not_leak_and_results_carry_no_password() -> None:
    h = PasswordHasher(FAST)
    assert repr(h).startswith("PasswordHasher(params=Argon2Params(")
    assert set(VerifyResult.__dataclass_fields__) == {"ok", "needs_rehash"}
    h._executor.shutdown()


# --- concurrency and the event loop ---------------------------------------------------------


async def _max_tick_gap(work: Awaitable[object], period: float = 0.005) -> tuple[float, int]:
    """Run ``work`` while a ticker sleeps ``period`` repeatedly; return (largest gap, ticks)."""
    done = asyncio.Event()
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(period)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick_task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # let the ticker start before the work does
    try:
        await work
    finally:
        done.set()
        await tick_task
    return max(gaps), len(gaps)


def _timed(fn: Callable[[str], object], arg: str) -> float:
    start = time.perf_counter()
    fn(arg)
    return time.perf_counter() - start


# Heavier than the defaults so a blocked loop would be unmistakable even on a loaded machine.
SLOW = Argon2Params(time_cost=6, memory_cost=19456, parallelism=1)


async def test_event_loop_is_not_blocked_while_hashing() -> None:
    h = PasswordHasher(SLOW)
    try:
        stored = await h.hash("correct horse battery staple")
        start = time.perf_counter()
        await h.verify(stored, "correct horse battery staple")
        one_hash = time.perf_counter() - start

        work = asyncio.gather(*(h.verify(stored, f"guess number {i}") for i in range(4)))
        max_gap, ticks = await _max_tick_gap(work)
    finally:
        await h.close()

    # 4 verifies on 2 workers take about 2 * one_hash; a 5 ms ticker ticks many times.
    assert ticks >= 4
    # Blocking would show a gap of at least one whole hash; allow scheduling noise, not that.
    assert max_gap < 0.5 * one_hash, (max_gap, one_hash)


async def test_ticker_detects_a_blocked_loop() -> None:
    """Control for the test above: hashing on the loop thread does show up as a long gap."""
    raw = argon2.PasswordHasher(
        time_cost=SLOW.time_cost, memory_cost=SLOW.memory_cost, parallelism=SLOW.parallelism
    )
    one_hash = min(_timed(raw.hash, "correct horse battery staple") for _ in range(2))

    async def blocking() -> None:
        await asyncio.sleep(0.02)
        raw.hash("correct horse battery staple")

    max_gap, _ = await _max_tick_gap(blocking())
    assert max_gap >= 0.8 * one_hash


async def test_semaphore_bounds_concurrent_jobs() -> None:
    lock = threading.Lock()
    running = 0
    peak = 0

    class Instrumented(PasswordHasher):
        def _verify_sync(self, stored_hash: str, password: str) -> VerifyResult:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            try:
                time.sleep(0.01)  # widen the window in which jobs overlap
                return super()._verify_sync(stored_hash, password)
            finally:
                with lock:
                    running -= 1

    # A roomy external pool: only the semaphore can hold concurrency down to 2.
    pool = ThreadPoolExecutor(max_workers=8)
    h = Instrumented(FAST, max_concurrency=2, executor=pool)
    try:
        stored = await h.hash("correct horse battery staple")
        results = await asyncio.gather(*(h.verify(stored, f"guess number {i}") for i in range(12)))
        assert all(not r.ok for r in results)
        assert peak == 2
    finally:
        await h.close()
        # close() leaves a caller-supplied executor running.
        assert pool.submit(lambda: 42).result() == 42
        pool.shutdown()


async def test_cancelled_caller_keeps_its_slot_until_the_job_ends() -> None:
    lock = threading.Lock()
    running = 0
    peak = 0
    release = threading.Event()

    class Instrumented(PasswordHasher):
        def _verify_sync(self, stored_hash: str, password: str) -> VerifyResult:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            try:
                release.wait(5)
                return super()._verify_sync(stored_hash, password)
            finally:
                with lock:
                    running -= 1

    pool = ThreadPoolExecutor(max_workers=4)
    h = Instrumented(FAST, max_concurrency=1, executor=pool)
    try:
        stored = await h.hash("correct horse battery staple")
        first = asyncio.create_task(h.verify(stored, "guess one"))
        await asyncio.sleep(0.05)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        second = asyncio.create_task(h.verify(stored, "guess two"))
        await asyncio.sleep(0.05)
        assert running == 1, "second job must wait for the cancelled one's thread"
        release.set()
        assert not (await second).ok
        assert peak == 1
    finally:
        release.set()
        await h.close()
        pool.shutdown()


async def test_own_executor_is_sized_to_max_concurrency_and_closed() -> None:
    h = PasswordHasher(FAST, max_concurrency=3)
    assert h._executor._max_workers == 3
    await h.close()
    await h.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await h.hash("correct horse battery staple")
    with pytest.raises(RuntimeError):
        h._executor.submit(lambda: None)


def test_max_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        PasswordHasher(FAST, max_concurrency=0)
