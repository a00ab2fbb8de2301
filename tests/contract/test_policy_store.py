"""Conformance suite of the `TenantRuleStore` port, run over every adapter.

Runs over every name in `BACKENDS` (tests/contract/conftest.py): SQLite and PostgreSQL. A new
adapter adds a branch to `_open`, returning the store and a `Handle` on its database.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.events import Actor, AuditEvent
from gateway.policy.engine import PolicyEngine
from gateway.policy.ports import TenantRuleStore
from gateway.policy.rules import PolicyError, Rule
from gateway.policy.service import TenantRuleService
from gateway.storage.ports import StoreUnavailable
from gateway.storage.postgres.policy import PostgresTenantRuleStore
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.policy import SqliteTenantRuleStore
from tests.contract.conftest import BackendKind

POLICY_DIR = Path(__file__).resolve().parents[2] / "policy"
ACTOR = Actor("user", "u_admin")


@dataclass
class Handle:
    """What the suite needs of the database beside the store: audit reads and an outage."""

    audit_rows: Callable[[str, str], Awaitable[list[tuple[str, dict[str, Any]]]]]
    break_reads: Callable[[], Awaitable[None]]
    close: Callable[[], Awaitable[None]]


async def _sqlite(tmp_path: Path) -> tuple[TenantRuleStore, Handle]:
    db = await SqliteDatabase.open(tmp_path / "gateway.db")

    async def audit_rows(column: str, value: str) -> list[tuple[str, dict[str, Any]]]:
        sql = f"SELECT action, record FROM audit_events WHERE {column} = ? ORDER BY seq"  # noqa: S608
        return [(str(r[0]), json.loads(r[1])) for r in await db.fetchall(sql, (value,))]

    return SqliteTenantRuleStore(db), Handle(audit_rows, db.reader.close, db.close)


async def _postgres(kind: BackendKind) -> tuple[TenantRuleStore, Handle]:
    db = await kind.open_postgres()

    async def audit_rows(column: str, value: str) -> list[tuple[str, dict[str, Any]]]:
        sql = f"SELECT action, record FROM gateway.audit_events WHERE {column} = $1 ORDER BY seq"  # noqa: S608
        return [(str(r[0]), json.loads(r[1])) for r in await db.fetch(sql, value)]

    return PostgresTenantRuleStore(db), Handle(audit_rows, db.close, db.close)


@pytest.fixture
async def store_db(
    backend_kind: BackendKind, tmp_path: Path
) -> AsyncIterator[tuple[TenantRuleStore, Handle]]:
    if backend_kind.name == "postgres":
        store, handle = await _postgres(backend_kind)
    else:
        store, handle = await _sqlite(tmp_path)
    yield store, handle
    await handle.close()


def _event(tenant_id: str) -> AuditEvent:
    return AuditEvent(action="policy.update", actor=ACTOR, tenant_id=tenant_id)


async def _audit_actions(db: Handle, tenant_id: str) -> list[str]:
    return [action for action, _ in await db.audit_rows("tenant_id", tenant_id)]


async def test_unknown_tenant_has_no_rules(
    store_db: tuple[TenantRuleStore, Handle],
) -> None:
    store, _ = store_db
    assert await store.list_rules("t_nobody") == []


async def test_replace_then_list_keeps_order_and_drops_duplicates(
    store_db: tuple[TenantRuleStore, Handle],
) -> None:
    store, db = store_db
    rules = [
        Rule("editor", "t_a", "/b/*", "DELETE", "deny"),
        Rule("u_1", "t_a", "/x", "GET|HEAD"),
        Rule("editor", "t_a", "/b/*", "DELETE", "deny"),
    ]
    await store.replace_rules("t_a", rules, _event("t_a"))
    assert await store.list_rules("t_a") == rules[:2]
    await store.replace_rules("t_a", [rules[1]], _event("t_a"))
    assert await store.list_rules("t_a") == [rules[1]]
    assert await _audit_actions(db, "t_a") == ["policy.update", "policy.update"]


async def test_stored_domain_is_always_the_owning_tenant(
    store_db: tuple[TenantRuleStore, Handle],
) -> None:
    store, _ = store_db
    await store.replace_rules("t_a", [Rule("viewer", "*", "/x", "POST")], _event("t_a"))
    await store.replace_rules("t_b", [Rule("viewer", "t_a", "/y", "POST")], _event("t_b"))
    assert await store.list_rules("t_a") == [Rule("viewer", "t_a", "/x", "POST")]
    assert await store.list_rules("t_b") == [Rule("viewer", "t_b", "/y", "POST")]


async def test_replace_is_atomic_with_its_audit_event(
    store_db: tuple[TenantRuleStore, Handle],
) -> None:
    store, db = store_db
    first = [Rule("viewer", "t_a", "/x", "POST")]
    await store.replace_rules("t_a", first, _event("t_a"))
    event = _event("t_a")
    await store.replace_rules("t_a", first, event)
    # Re-using an event id makes the audit insert fail: the rule change must roll back too.
    with pytest.raises(Exception):  # noqa: B017, PT011 - the adapter's error type may vary
        await store.replace_rules("t_a", [Rule("viewer", "t_a", "/z", "PUT")], event)
    assert await store.list_rules("t_a") == first
    assert len(await _audit_actions(db, "t_a")) == 2


async def test_a_closed_database_is_store_unavailable(
    store_db: tuple[TenantRuleStore, Handle],
) -> None:
    store, db = store_db
    await db.break_reads()
    with pytest.raises(StoreUnavailable):
        await store.list_rules("t_a")


async def test_service_validates_audits_stores_and_refreshes_the_engine(
    store_db: tuple[TenantRuleStore, Handle],
) -> None:
    store, db = store_db
    engine = PolicyEngine.from_files(
        POLICY_DIR / "model.conf", POLICY_DIR / "policy.csv", store=store, freeze_gc=False
    )
    service = TenantRuleService(store, engine)
    assert (await engine.authorize("u_1", ("admin",), "t_a", "/b/1", "DELETE")).allow
    await service.replace_rules("t_a", [Rule("admin", "", "/b/*", "DELETE", "deny")], ACTOR)
    assert not (await engine.authorize("u_1", ("admin",), "t_a", "/b/1", "DELETE")).allow
    assert (await engine.authorize("u_1", ("admin",), "t_b", "/b/1", "DELETE")).allow
    [(_, record)] = await db.audit_rows("action", "policy.update")
    assert record["details"]["rules"] == ["p, admin, t_a, /b/*, DELETE, deny"]


@pytest.mark.parametrize(
    "rule",
    [
        Rule("viewer", "*", "/x", "POST"),
        Rule("viewer", "t_b", "/x", "POST"),
        Rule("admin", "", "/.gateway/admin/*", "*"),
        Rule("viewer", "", "/x", "FETCH"),
    ],
)
async def test_service_refuses_rules_a_tenant_may_not_hold(
    store_db: tuple[TenantRuleStore, Handle], rule: Rule
) -> None:
    store, db = store_db
    engine = PolicyEngine.from_files(
        POLICY_DIR / "model.conf", POLICY_DIR / "policy.csv", store=store, freeze_gc=False
    )
    with pytest.raises(PolicyError):
        await TenantRuleService(store, engine).replace_rules("t_a", [rule], ACTOR)
    assert await store.list_rules("t_a") == []
    assert await _audit_actions(db, "t_a") == []


async def test_changes_since_names_the_tenants_whose_rules_changed(
    store_db: tuple[TenantRuleStore, Handle],
) -> None:
    store, _ = store_db
    _, start = await store.changes_since(None)
    assert await store.changes_since(start) == ([], start)
    await store.replace_rules("t_a", [Rule("editor", "t_a", "/x", "GET")], _event("t_a"))
    await store.replace_rules("t_b", [], _event("t_b"))
    tenants, cursor = await store.changes_since(start)
    assert tenants == ["t_a", "t_b"]
    assert cursor > start
    assert await store.changes_since(cursor) == ([], cursor)
