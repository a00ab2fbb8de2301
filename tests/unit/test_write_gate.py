"""WriteGate: a writer waits only while writing is paused, and hears of a lost connection."""

from __future__ import annotations

import asyncio

import pytest

from gateway.proxy.flow import WriteGate


async def test_wait_returns_at_once_unless_paused() -> None:
    gate = WriteGate()
    await asyncio.wait_for(gate.wait(), 1)  # not paused: no waiting
    gate.pause()
    waiting = asyncio.ensure_future(gate.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    gate.resume()
    await asyncio.wait_for(waiting, 1)
    await asyncio.wait_for(gate.wait(), 1)  # resumed: no waiting again


async def test_a_lost_connection_fails_the_waiting_writer() -> None:
    gate = WriteGate()
    gate.pause()
    waiting = asyncio.ensure_future(gate.wait())
    await asyncio.sleep(0)
    gate.fail(ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(waiting, 1)
    gate.fail(ConnectionResetError("again"))  # nobody waits: nothing happens
