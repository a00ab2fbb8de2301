"""The stream's building blocks: change signal, poller, cursor, SSE frames, query parsing, sink."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.audit.events import Actor, AuditEvent
from gateway.audit.sink import JsonLinesSink
from gateway.audit.store import AuditQuery, dollar, qmark, where_clause
from gateway.audit.stream import AuditFeed, ChangeSignal, Cursor
from gateway.web.admin_audit import since_param, sse_frames
from gateway.web.common import BadBody
from tests.unit.test_audit_verify import MemoryReader


def add(reader: MemoryReader, tenant: str | None = "t", action: str = "auth.signin") -> None:
    reader.append(AuditEvent(action=action, actor=Actor("user", "u"), tenant_id=tenant))


async def test_a_signal_wakes_waiters_taken_before_the_notify() -> None:
    signal = ChangeSignal()
    before = signal.current()
    signal.notify()
    await asyncio.wait_for(before.wait(), 1.0)
    assert not signal.current().is_set()


async def test_the_poller_notices_new_events_only_while_followed() -> None:
    reader = MemoryReader()
    feed = AuditFeed(reader, interval=0.005)
    feed.start()
    try:
        with feed.following():
            waiting = feed.signal.current()
            await asyncio.wait_for(waiting.wait(), 1.0)  # the first poll
            waiting = feed.signal.current()
            add(reader)
            await asyncio.wait_for(waiting.wait(), 1.0)
    finally:
        await feed.close()
    assert feed.closed.is_set()


async def test_a_cursor_skips_other_tenants_and_pages() -> None:
    reader = MemoryReader()
    cursor = Cursor(reader, "t", 0)
    for i in range(450):
        add(reader, "t" if i % 2 else "other")
    got = await cursor.read()
    assert len(got) == 225 and all(e.record["tenant_id"] == "t" for e in got)
    assert await cursor.read() == []


def test_sse_frames_are_one_data_line_each() -> None:
    reader = MemoryReader()
    reader.append(AuditEvent(action="x.y", actor=Actor("user"), details={"note": "two\nlines"}))
    frame = sse_frames(reader.rows).decode()
    assert frame.startswith("id: 1\nevent: audit\ndata: {") and frame.endswith("}\n\n")
    assert frame.count("\n") == 4
    assert json.loads(frame.split("data: ", 1)[1])["details"]["note"] == "two\nlines"


def test_since_accepts_seconds_and_iso_times() -> None:
    assert since_param("1700000000.5") == 1700000000.5
    assert since_param("2023-11-14T22:13:20Z") == 1700000000.0
    assert since_param(None) is None
    with pytest.raises(BadBody):
        since_param("yesterday")


def test_where_clauses_carry_values_as_parameters() -> None:
    query = AuditQuery(tenant_id="t'; DROP", action="session.*", since=1.0, after_seq=3)
    sql, params = where_clause(query, dollar)
    assert "DROP" not in sql and params == ["t'; DROP", "session.", 1.0, 3]
    assert "$4" in sql
    assert where_clause(AuditQuery(), qmark) == ("", [])


async def test_the_sink_writes_json_lines_and_resumes(tmp_path: Path) -> None:
    reader = MemoryReader()
    add(reader)
    out, position = tmp_path / "audit.jsonl", tmp_path / "position"
    feed = AuditFeed(reader, interval=0.005)
    feed.start()
    sink = JsonLinesSink(feed, str(out), position)
    await sink.start()
    try:
        add(reader, action="auth.signout")
        deadline = asyncio.get_running_loop().time() + 5.0
        while not out.exists() or not out.read_text():  # polled until written, bounded
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
    finally:
        await sink.close()
        await feed.close()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["action"] for e in lines] == ["auth.signout"]
    assert position.read_text().strip() == str(lines[-1]["seq"])
