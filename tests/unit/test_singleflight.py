"""`SingleFlight` and the caches built on it: concurrent misses share one load, and no
caller joins a load that an invalidation overtook."""

from __future__ import annotations

import asyncio

import pytest

from gateway.identity.directory import TtlCache
from gateway.storage.singleflight import SingleFlight
from tests.support.clock import ManualClock


class GatedLoads:
    """Loads numbered in the order they started, each waiting until it is released."""

    def __init__(self) -> None:
        self.started = 0
        self.gates: dict[int, asyncio.Event] = {}

    def _gate(self, number: int) -> asyncio.Event:
        return self.gates.setdefault(number, asyncio.Event())

    async def load(self) -> str:
        self.started += 1
        number = self.started
        await self._gate(number).wait()
        return f"load-{number}"

    def release(self, *numbers: int) -> None:
        """Lets these loads finish (all, started or not, when none is named)."""
        for number in numbers or range(1, 100):
            self._gate(number).set()


async def settle() -> None:
    """Lets every task that can run reach its next wait."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrent_callers_share_one_load() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    loads = GatedLoads()
    callers = [asyncio.ensure_future(flights.run("k", loads.load)) for _ in range(20)]
    await settle()
    assert (loads.started, len(flights)) == (1, 1)
    loads.release()
    assert await asyncio.gather(*callers) == ["load-1"] * 20
    assert len(flights) == 0  # landed: the next caller loads afresh
    assert await flights.run("k", loads.load) == "load-2"


async def test_different_keys_load_apart() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    loads = GatedLoads()
    callers = [asyncio.ensure_future(flights.run(key, loads.load)) for key in ("a", "b", "a")]
    await settle()
    loads.release()
    assert sorted(await asyncio.gather(*callers)) == ["load-1", "load-1", "load-2"]


async def test_a_failure_reaches_every_caller_and_is_not_remembered() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    gate = asyncio.Event()
    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise ConnectionError("store down")

    callers = [asyncio.ensure_future(flights.run("k", failing)) for _ in range(3)]
    await settle()
    gate.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert [type(o) for o in outcomes] == [ConnectionError] * 3
    assert calls == 1
    with pytest.raises(ConnectionError):
        await flights.run("k", failing)
    assert calls == 2


async def test_a_cancelled_caller_does_not_cancel_the_others_load() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    loads = GatedLoads()
    first = asyncio.ensure_future(flights.run("k", loads.load))
    second = asyncio.ensure_future(flights.run("k", loads.load))
    await settle()
    first.cancel()
    await settle()
    loads.release()
    assert await second == "load-1"
    assert first.cancelled()


async def test_after_forget_new_callers_start_a_new_load() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    loads = GatedLoads()
    before = asyncio.ensure_future(flights.run("k", loads.load))
    await settle()
    flights.forget()
    after = asyncio.ensure_future(flights.run("k", loads.load))
    await settle()
    assert loads.started == 2
    loads.release()
    assert (await before, await after) == ("load-1", "load-2")


# -- TtlCache (the directory's caches) ---------------------------------------------------------


async def test_ttl_cache_misses_share_one_load_and_keep_its_start_time() -> None:
    clock = ManualClock()
    cache: TtlCache[str, str] = TtlCache(1.0, 100, clock)
    loads = GatedLoads()
    callers = [asyncio.ensure_future(cache.get("k", loads.load)) for _ in range(10)]
    await settle()
    loaded_at = clock()
    clock.now += 0.5  # the read is slow: the entry's age still counts from its start
    loads.release()
    assert await asyncio.gather(*callers) == ["load-1"] * 10
    assert loads.started == 1
    assert cache.loaded_at("k") == loaded_at
    assert await cache.get("k", loads.load) == "load-1"  # cached
    clock.now += 0.5
    assert await cache.get("k", loads.load) == "load-2"  # 1 s after the read began


@pytest.mark.parametrize("invalidate", ["drop", "clear"])
async def test_ttl_cache_keeps_no_load_an_invalidation_overtook(invalidate: str) -> None:
    cache: TtlCache[str, str] = TtlCache(60.0, 100, ManualClock())
    loads = GatedLoads()
    before = asyncio.ensure_future(cache.get("k", loads.load))
    await settle()
    if invalidate == "drop":
        cache.drop(lambda key: key == "k")
    else:
        cache.clear()
    after = asyncio.ensure_future(cache.get("k", loads.load))  # must not join `before`
    await settle()
    assert loads.started == 2
    loads.release(2)
    assert await after == "load-2"
    loads.release(1)  # the overtaken load lands last: it must not replace the fresh one
    assert await before == "load-1"
    assert await cache.get("k", loads.load) == "load-2"
    assert loads.started == 2
