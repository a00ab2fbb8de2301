"""Conformance suite of the `ChangeBus` port, run over every adapter.

Each test gets two "replicas": for the in-process bus they are the same object (one process
is all it serves); for Redis they are two `RedisChangeBus` instances sharing a prefix, so a
notice must cross Redis to arrive. Deliveries are awaited through queues, never slept for.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.storage.memory.bus import MemoryChangeBus
from gateway.storage.ports import ChangeBus
from gateway.storage.redis.bus import RedisChangeBus
from gateway.storage.redis.client import open_redis

WAIT = 5.0


@dataclass
class Replicas:
    a: ChangeBus
    b: ChangeBus


class Inbox:
    """A subscriber that records what it gets; `next()` awaits the next notice."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, Mapping[str, Any]]] = asyncio.Queue()

    async def __call__(self, topic: str, payload: Mapping[str, Any]) -> None:
        await self.queue.put((topic, payload))

    async def next(self) -> tuple[str, Mapping[str, Any]]:
        return await asyncio.wait_for(self.queue.get(), WAIT)


@pytest.fixture(params=["memory", "redis"])
async def replicas(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[Replicas]:
    if request.param == "memory":
        bus = MemoryChangeBus()
        yield Replicas(bus, bus)
        return
    prefix = f"{redis_prefix}bus-{secrets.token_hex(4)}:"
    handle = open_redis(redis_url, prefix=prefix)
    a, b = RedisChangeBus(handle), RedisChangeBus(handle)
    try:
        await a.start()
        await b.start()
        assert a.connected and b.connected
        yield Replicas(a, b)
    finally:
        await a.close()
        await b.close()
        await handle.aclose()


async def test_a_notice_reaches_the_other_replica_with_its_payload(replicas: Replicas) -> None:
    inbox = Inbox()
    replicas.b.subscribe(inbox)
    payload = {"ids": ["s_1", "s_2"], "n": 3, "nested": {"ok": True, "x": None}, "t": "é"}
    await replicas.a.publish("session.revoked", payload)
    assert await inbox.next() == ("session.revoked", payload)


async def test_the_publishing_replica_gets_its_own_notice_once_before_publish_returns(
    replicas: Replicas,
) -> None:
    mine, theirs = Inbox(), Inbox()
    replicas.a.subscribe(mine)
    replicas.b.subscribe(theirs)
    await replicas.a.publish("tenant.changed", {"tenant_id": "t_1"})
    assert mine.queue.get_nowait() == ("tenant.changed", {"tenant_id": "t_1"})
    # A later notice from the other replica arrives after any echo of the first would have.
    await replicas.b.publish("tenant.changed", {"tenant_id": "t_2"})
    assert await mine.next() == ("tenant.changed", {"tenant_id": "t_2"})
    # Replica b got its own notice at once and a's whenever it crossed: no order between them.
    got = [(await theirs.next())[1]["tenant_id"] for _ in range(2)]
    assert sorted(got) == ["t_1", "t_2"]
    assert mine.queue.empty()


async def test_notices_from_one_replica_arrive_in_order(replicas: Replicas) -> None:
    inbox = Inbox()
    replicas.b.subscribe(inbox)
    for i in range(20):
        await replicas.a.publish("member.changed", {"i": i})
    assert [(await inbox.next())[1]["i"] for _ in range(20)] == list(range(20))


async def test_every_subscriber_gets_its_own_copy(replicas: Replicas) -> None:
    seen: list[Mapping[str, Any]] = []

    async def mutating(topic: str, payload: Mapping[str, Any]) -> None:
        assert isinstance(payload, dict)
        payload["ids"].append("tampered")
        seen.append(payload)

    inbox = Inbox()
    replicas.b.subscribe(mutating)
    replicas.b.subscribe(inbox)
    await replicas.a.publish("session.revoked", {"ids": ["s_1"]})
    assert await inbox.next() == ("session.revoked", {"ids": ["s_1"]})
    assert seen == [{"ids": ["s_1", "tampered"]}]


async def test_a_failing_subscriber_does_not_stop_the_others(
    replicas: Replicas, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(topic: str, payload: Mapping[str, Any]) -> None:
        raise RuntimeError("boom")

    before, after = Inbox(), Inbox()
    replicas.b.subscribe(before)
    replicas.b.subscribe(broken)
    replicas.b.subscribe(after)
    await replicas.a.publish("session.revoked", {"ids": ["s_1"]})
    await replicas.a.publish("session.revoked", {"ids": ["s_2"]})
    for inbox in (before, after):
        assert (await inbox.next())[1] == {"ids": ["s_1"]}
        assert (await inbox.next())[1] == {"ids": ["s_2"]}
    assert "change-bus subscriber failed" in caplog.text


async def test_unsubscribe_stops_delivery_and_is_idempotent(replicas: Replicas) -> None:
    gone, stays = Inbox(), Inbox()
    unsubscribe = replicas.b.subscribe(gone)
    replicas.b.subscribe(stays)
    unsubscribe()
    unsubscribe()
    await replicas.a.publish("session.revoked", {"ids": ["s_1"]})
    assert await stays.next() == ("session.revoked", {"ids": ["s_1"]})
    assert gone.queue.empty()
