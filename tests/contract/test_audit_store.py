"""Conformance suite of the `AuditReader` port (and of chain verification over it).

Runs over every name in `BACKENDS` (tests/contract/conftest.py): SQLite and PostgreSQL.
Events are appended with each backend's `append_event`, inside a transaction, as the stores do.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.audit.events import Actor, AuditEvent
from gateway.audit.store import AuditQuery, AuditReader
from gateway.audit.stream import Cursor
from gateway.audit.verify import verify_all
from gateway.storage.postgres import audit as pg_audit
from gateway.storage.sqlite import audit as sqlite_audit
from gateway.storage.sqlite.database import SqliteDatabase
from tests.contract.conftest import BackendKind

ACTOR = Actor("user", "u_1")


@dataclass
class Backend:
    reader: AuditReader
    append: Callable[[AuditEvent], Awaitable[None]]
    tamper: Callable[[int, str], Awaitable[None]]


async def _sqlite(tmp_path: Path) -> tuple[Backend, Callable[[], Awaitable[None]]]:
    db = await SqliteDatabase.open(tmp_path / "gw.db")

    async def append(event: AuditEvent) -> None:
        async with db.transaction() as conn:
            await sqlite_audit.append_event(conn, event)

    async def tamper(seq: int, record: str) -> None:
        async with db.transaction() as conn:
            await conn.execute("UPDATE audit_events SET record = ? WHERE seq = ?", (record, seq))

    return Backend(sqlite_audit.SqliteAuditReader(db), append, tamper), db.close


async def _postgres(kind: BackendKind) -> tuple[Backend, Callable[[], Awaitable[None]]]:
    db = await kind.open_postgres()

    async def append(event: AuditEvent) -> None:
        async with db.transaction() as conn:
            await pg_audit.append_event(conn, event)

    async def tamper(seq: int, record: str) -> None:
        async with db.transaction() as conn:
            await conn.execute(
                "UPDATE gateway.audit_events SET record = $1 WHERE seq = $2", record, seq
            )

    return Backend(pg_audit.PostgresAuditReader(db), append, tamper), db.close


@pytest.fixture
async def backend(backend_kind: BackendKind, tmp_path: Path) -> AsyncIterator[Backend]:
    if backend_kind.name == "postgres":
        made, close = await _postgres(backend_kind)
    else:
        made, close = await _sqlite(tmp_path)
    try:
        yield made
    finally:
        await close()


def event(action: str, tenant: str | None, ts: float = 100.0) -> AuditEvent:
    return AuditEvent(action=action, actor=ACTOR, tenant_id=tenant, target="x", ts=ts)


async def fill(backend: Backend) -> None:
    for i, (action, tenant) in enumerate(
        [("auth.signin", "t_a"), ("auth.signin", "t_b"), ("session.revoke", "t_a"),
         ("policy.update", None), ("session.revoke_user", "t_a")]
    ):  # fmt: skip
        await backend.append(event(action, tenant, ts=100.0 + i))


async def test_find_is_newest_last_and_tenant_scoped(backend: Backend) -> None:
    await fill(backend)
    everything = await backend.reader.find(AuditQuery(limit=100))
    assert [e.seq for e in everything] == sorted(e.seq for e in everything)
    assert len(everything) == 5
    mine = await backend.reader.find(AuditQuery(tenant_id="t_a"))
    assert [e.record["action"] for e in mine] == [
        "auth.signin", "session.revoke", "session.revoke_user",
    ]  # fmt: skip
    assert all(e.record["tenant_id"] == "t_a" for e in mine)
    newest = await backend.reader.find(AuditQuery(limit=2))
    assert [e.seq for e in newest] == [e.seq for e in everything[-2:]]


async def test_filters_and_cursors(backend: Backend) -> None:
    await fill(backend)
    everything = await backend.reader.find(AuditQuery())
    prefixed = await backend.reader.find(AuditQuery(action="session.*"))
    assert {e.record["action"] for e in prefixed} == {"session.revoke", "session.revoke_user"}
    exact = await backend.reader.find(AuditQuery(action="session.revoke"))
    assert [e.record["action"] for e in exact] == ["session.revoke"]
    since = await backend.reader.find(AuditQuery(since=103.0))
    assert [e.record["ts"] for e in since] == [103.0, 104.0]
    after = await backend.reader.find(AuditQuery(after_seq=everything[1].seq, limit=2))
    assert [e.seq for e in after] == [everything[2].seq, everything[3].seq]
    before = await backend.reader.find(AuditQuery(before_seq=everything[2].seq, limit=1))
    assert [e.seq for e in before] == [everything[1].seq]
    assert await backend.reader.last_seq() == everything[-1].seq
    assert await backend.reader.chains() == sorted(["platform", "t_a", "t_b"])


async def test_an_action_with_like_wildcards_matches_literally(backend: Backend) -> None:
    await fill(backend)
    assert await backend.reader.find(AuditQuery(action="session_%*")) == []


async def test_verify_passes_then_names_the_tampered_event(backend: Backend) -> None:
    await fill(backend)
    report = await verify_all(backend.reader)
    assert report.ok and report.events == 5 and len(report.chains) == 3
    victim = (await backend.reader.find(AuditQuery(tenant_id="t_a")))[1]
    forged = dict(victim.record, outcome="failure")
    await backend.tamper(victim.seq, json.dumps(forged, separators=(",", ":")))
    report = await verify_all(backend.reader)
    broken = [c.broken for c in report.chains if c.broken is not None]
    assert not report.ok and len(broken) == 1
    assert broken[0].chain == "t_a" and broken[0].seq == victim.seq
    assert broken[0].event_id == victim.record["id"] and "modified" in broken[0].reason


async def test_a_cursor_returns_each_new_event_once(backend: Backend) -> None:
    await fill(backend)
    cursor = Cursor(backend.reader, "t_a", await backend.reader.last_seq(), lookback=50)
    assert await cursor.read() == []
    await backend.append(event("auth.signout", "t_a"))
    await backend.append(event("auth.signout", "t_b"))
    got = await cursor.read()
    assert [e.record["action"] for e in got] == ["auth.signout"]
    assert got[0].record["tenant_id"] == "t_a"
    assert await cursor.read() == []
