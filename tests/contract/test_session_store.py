"""Conformance suite of the `SessionStore` port, run over every adapter.

Runs over every name in `BACKENDS` (tests/contract/conftest.py): SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.events import Actor, AuditEvent
from gateway.sessions import tokens
from gateway.sessions.models import SessionRecord
from gateway.storage.ports import SessionStore, StoreConflict
from gateway.storage.postgres.sessions import PostgresSessionStore
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.sessions import SqliteSessionStore
from tests.contract.conftest import BackendKind

NOW = 1_700_000_000.0
ADMIN = Actor("user", "u_admin")


@dataclass
class Backend:
    store: SessionStore
    audit_records: Callable[[], Awaitable[list[dict[str, Any]]]]


async def _sqlite_backend(tmp_path: Path) -> tuple[Backend, Callable[[], Awaitable[None]]]:
    db = await SqliteDatabase.open(tmp_path / "gw.db")

    async def records() -> list[dict[str, Any]]:
        rows = await db.fetchall("SELECT record FROM audit_events ORDER BY seq")
        return [json.loads(row[0]) for row in rows]

    return Backend(SqliteSessionStore(db), records), db.close


async def _postgres_backend(kind: BackendKind) -> tuple[Backend, Callable[[], Awaitable[None]]]:
    db = await kind.open_postgres()

    async def records() -> list[dict[str, Any]]:
        rows = await db.fetch("SELECT record FROM gateway.audit_events ORDER BY seq")
        return [json.loads(row[0]) for row in rows]

    return Backend(PostgresSessionStore(db), records), db.close


@pytest.fixture
async def backend(backend_kind: BackendKind, tmp_path: Path) -> AsyncIterator[Backend]:
    if backend_kind.name == "postgres":
        made, close = await _postgres_backend(backend_kind)
    else:
        made, close = await _sqlite_backend(tmp_path)
    try:
        yield made
    finally:
        await close()


@pytest.fixture
def store(backend: Backend) -> SessionStore:
    return backend.store


def make(user: str = "u_1", tenant: str = "t_a", **changes: Any) -> SessionRecord:
    record = SessionRecord(
        id=tokens.new_session_id(),
        token_hash=tokens.hash_token(tokens.new_token()),
        user_id=user,
        tenant_id=tenant,
        created_at=NOW,
        last_seen_at=NOW,
        expires_at=NOW + 3600,
        idle_timeout=600,
        ip="192.0.2.1",
        user_agent="ua",
    )
    return dataclasses.replace(record, **changes)


def event(action: str = "session.revoke", tenant: str | None = "t_a") -> AuditEvent:
    return AuditEvent(action=action, actor=ADMIN, tenant_id=tenant, ts=NOW)


async def test_create_then_get_by_id_and_by_token_hash(store: SessionStore) -> None:
    record = make(mfa=True, auth_method="oidc")
    await store.create(record)
    assert await store.get(record.id) == record
    assert await store.get_by_token_hash(record.token_hash) == record
    assert await store.get("s_missing") is None
    assert await store.get_by_token_hash("0" * 64) is None


async def test_duplicate_id_or_token_hash_is_a_conflict(store: SessionStore) -> None:
    record = make()
    await store.create(record)
    with pytest.raises(StoreConflict):
        await store.create(make(id=record.id))
    with pytest.raises(StoreConflict):
        await store.create(make(token_hash=record.token_hash))


async def test_create_writes_the_given_audit_event(backend: Backend) -> None:
    await backend.store.create(make(), event("auth.signin"))
    assert [r["action"] for r in await backend.audit_records()] == ["auth.signin"]


async def test_revoke_marks_one_session_and_audits_it(backend: Backend) -> None:
    record, other = make(), make()
    for r in (record, other):
        await backend.store.create(r)
    assert await backend.store.revoke(record.id, NOW + 5, event()) is True
    got = await backend.store.get(record.id)
    assert got is not None
    assert got.revoked_at == NOW + 5
    assert not got.is_valid(NOW + 6)
    assert (await backend.store.get(other.id)) == other
    [audit] = await backend.audit_records()
    assert audit["action"] == "session.revoke"
    assert audit["details"]["session_ids"] == [record.id]


async def test_revoking_twice_or_unknown_is_false_and_unaudited(backend: Backend) -> None:
    record = make()
    await backend.store.create(record)
    await backend.store.revoke(record.id, NOW, event())
    assert await backend.store.revoke(record.id, NOW + 1, event()) is False
    assert await backend.store.revoke("s_unknown", NOW, event()) is False
    assert len(await backend.audit_records()) == 1
    got = await backend.store.get(record.id)
    assert got is not None
    assert got.revoked_at == NOW


async def test_revoke_all_for_user_spares_except_id_and_other_users(backend: Backend) -> None:
    keep, gone1, gone2 = make(), make(), make(tenant="t_b")
    stranger = make(user="u_2")
    for r in (keep, gone1, gone2, stranger):
        await backend.store.create(r)
    ids = await backend.store.revoke_all_for_user("u_1", NOW, event(tenant=None), keep.id)
    assert sorted(ids) == sorted([gone1.id, gone2.id])
    active = await backend.store.list(None, None, now=NOW)
    assert {r.id for r in active} == {keep.id, stranger.id}
    [audit] = await backend.audit_records()
    assert sorted(audit["details"]["session_ids"]) == sorted(ids)


async def test_revoke_all_for_user_without_except_revokes_all(store: SessionStore) -> None:
    records = [make(), make()]
    for r in records:
        await store.create(r)
    ids = await store.revoke_all_for_user("u_1", NOW, event())
    assert sorted(ids) == sorted(r.id for r in records)
    assert await store.revoke_all_for_user("u_1", NOW, event()) == []


async def test_revoke_all_for_tenant_leaves_other_tenants_alone(backend: Backend) -> None:
    a1, a2, b1 = make(tenant="t_a"), make(user="u_2", tenant="t_a"), make(tenant="t_b")
    for r in (a1, a2, b1):
        await backend.store.create(r)
    ids = await backend.store.revoke_all_for_tenant("t_a", NOW, event())
    assert sorted(ids) == sorted([a1.id, a2.id])
    assert await backend.store.get(b1.id) == b1
    assert [r.id for r in await backend.store.list("t_b", None, now=NOW)] == [b1.id]


async def test_list_filters_by_tenant_and_user(store: SessionStore) -> None:
    a1 = make(user="u_1", tenant="t_a", created_at=NOW - 3)
    a2 = make(user="u_2", tenant="t_a", created_at=NOW - 2)
    b1 = make(user="u_1", tenant="t_b", created_at=NOW - 1)
    for r in (a1, a2, b1):
        await store.create(r)
    assert [r.id for r in await store.list("t_a", None, now=NOW)] == [a1.id, a2.id]
    assert [r.id for r in await store.list("t_a", "u_1", now=NOW)] == [a1.id]
    assert [r.id for r in await store.list(None, "u_1", now=NOW)] == [a1.id, b1.id]
    assert [r.id for r in await store.list(None, None, now=NOW)] == [a1.id, a2.id, b1.id]
    assert await store.list("t_c", None, now=NOW) == []


async def test_list_never_returns_another_tenants_sessions(store: SessionStore) -> None:
    for i in range(5):
        await store.create(make(user=f"u_{i}", tenant="t_a"))
        await store.create(make(user=f"u_{i}", tenant="t_b"))
        for user in (f"u_{i}", None):
            assert {r.tenant_id for r in await store.list("t_a", user, now=NOW)} == {"t_a"}


async def test_list_omits_revoked_expired_and_idle_sessions(store: SessionStore) -> None:
    live = make()
    revoked = make()
    expired = make(expires_at=NOW)
    idle = make(last_seen_at=NOW - 600)
    for r in (live, revoked, expired, idle):
        await store.create(r)
    await store.revoke(revoked.id, NOW, event())
    assert [r.id for r in await store.list("t_a", None, now=NOW)] == [live.id]


async def test_touch_moves_last_seen_forward_only(store: SessionStore) -> None:
    record = make()
    await store.create(record)
    await store.touch(record.id, NOW + 30)
    await store.touch(record.id, NOW + 10)
    got = await store.get(record.id)
    assert got is not None
    assert got.last_seen_at == NOW + 30


async def test_touch_does_not_change_a_revoked_session(store: SessionStore) -> None:
    record = make()
    await store.create(record)
    await store.revoke(record.id, NOW, event())
    await store.touch(record.id, NOW + 30)
    got = await store.get(record.id)
    assert got is not None
    assert got.last_seen_at == NOW


async def test_rotate_revokes_old_and_inserts_new_with_one_event(backend: Backend) -> None:
    old = make()
    await backend.store.create(old)
    new = make(created_at=NOW + 7, last_seen_at=NOW + 7, mfa=True)
    assert await backend.store.rotate(old.id, new, event("session.rotate")) is True
    got_old = await backend.store.get(old.id)
    assert got_old is not None
    assert got_old.revoked_at == NOW + 7
    assert await backend.store.get_by_token_hash(new.token_hash) == new
    [audit] = await backend.audit_records()
    assert (audit["action"], audit["details"]["session_ids"]) == ("session.rotate", [old.id])


async def test_mfa_at_round_trips_through_create_rotate_and_list(backend: Backend) -> None:
    store = backend.store
    never, verified = make(), make(mfa=True, mfa_at=NOW - 12.25)
    for r in (never, verified):
        await store.create(r)
    assert (await store.get(never.id)) == never
    assert never.mfa_at is None
    assert await store.get(verified.id) == verified
    assert await store.get_by_token_hash(verified.token_hash) == verified
    # A step-up rotation carries the new time; a privilege-change one keeps the old.
    stepped = make(created_at=NOW + 3, last_seen_at=NOW + 3, mfa=True, mfa_at=NOW + 3)
    assert await store.rotate(verified.id, stepped, event("session.rotate")) is True
    got = await store.get_by_token_hash(stepped.token_hash)
    assert got is not None and got.mfa_at == NOW + 3
    listed = {r.id: r.mfa_at for r in await store.list("t_a", None, now=NOW + 4)}
    assert listed == {never.id: None, stepped.id: NOW + 3}


async def test_rotate_of_an_inactive_session_changes_nothing(backend: Backend) -> None:
    old = make()
    await backend.store.create(old)
    await backend.store.revoke(old.id, NOW, event())
    new = make()
    assert await backend.store.rotate(old.id, new, event("session.rotate")) is False
    assert await backend.store.get(new.id) is None
    assert await backend.store.rotate("s_unknown", new, event("session.rotate")) is False
    assert [r["action"] for r in await backend.audit_records()] == ["session.revoke"]


async def test_rotate_is_atomic_when_the_insert_fails(backend: Backend) -> None:
    old, taken = make(), make()
    for r in (old, taken):
        await backend.store.create(r)
    clash = make(token_hash=taken.token_hash)
    with pytest.raises(StoreConflict):
        await backend.store.rotate(old.id, clash, event("session.rotate"))
    assert await backend.store.get(old.id) == old
    assert await backend.store.get(clash.id) is None
    assert await backend.audit_records() == []


async def test_a_revocation_whose_event_cannot_be_written_does_not_happen(
    store: SessionStore,
) -> None:
    record = make()
    await store.create(record)
    unwritable = AuditEvent("session.revoke", ADMIN, details={"bad": object()})
    with pytest.raises(TypeError):
        await store.revoke(record.id, NOW, unwritable)
    assert await store.get(record.id) == record


async def test_delete_expired_removes_dead_rows_only(store: SessionStore) -> None:
    live, revoked, expired, idle = make(), make(), make(expires_at=NOW), make()
    for r in (live, revoked, expired, idle):
        await store.create(r)
    await store.revoke(revoked.id, NOW, event())
    await store.touch(live.id, NOW + 500)
    assert await store.delete_expired(NOW + 600) == 3
    assert await store.get(live.id) is not None
    assert all([await store.get(r.id) is None for r in (revoked, expired, idle)])
