"""Conformance suite of the `SecretStore` port over SQLite and PostgreSQL.

Each test starts from empty secret tables (the shared conftest empties the other tables).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.events import Actor, AuditEvent, RequestContext
from gateway.secrets.envelope import EnvelopeError, seal
from gateway.secrets.kek import KekRegistry
from gateway.secrets.ports import KekRef, ProviderError, SecretStore, TenantKek
from gateway.secrets.providers import LocalKeyProvider
from gateway.secrets.service import SecretService
from gateway.secrets.values import SecretValue
from gateway.storage.postgres.secrets import PostgresSecretStore
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.secrets import SqliteSecretStore
from tests.contract.conftest import BackendKind

ACTOR = Actor("user", "u_admin")
CTX = RequestContext()
CANARY = "canary-contract-6a1f"
SECRET_TABLES = ("secret_versions", "secret_heads", "secret_keks", "webhook_replays")


@dataclass
class Handle:
    """The store, raw SQL on its database (for tampering and audit reads), and closing."""

    store: SecretStore
    execute: Callable[[str], Awaitable[None]]
    audit: Callable[[], Awaitable[list[dict[str, Any]]]]
    close: Callable[[], Awaitable[None]]


async def _sqlite(tmp_path: Path) -> Handle:
    db = await SqliteDatabase.open(tmp_path / "gateway.db")

    async def execute(sql: str) -> None:
        async with db.transaction() as conn:
            await conn.execute(sql)

    async def audit() -> list[dict[str, Any]]:
        rows = await db.fetchall("SELECT record FROM audit_events ORDER BY seq")
        return [json.loads(r[0]) for r in rows]

    return Handle(SqliteSecretStore(db), execute, audit, db.close)


async def _postgres(kind: BackendKind) -> Handle:
    db = await kind.open_postgres()
    async with db.connection() as conn:
        for table in SECRET_TABLES:
            await conn.execute(f"DELETE FROM gateway.{table}")  # noqa: S608 - constants

    async def execute(sql: str) -> None:
        async with db.connection() as conn:
            await conn.execute(sql.replace("secret_versions", "gateway.secret_versions"))

    async def audit() -> list[dict[str, Any]]:
        rows = await db.fetch("SELECT record FROM gateway.audit_events ORDER BY seq")
        return [json.loads(r[0]) for r in rows]

    return Handle(PostgresSecretStore(db), execute, audit, db.close)


@pytest.fixture
async def handle(backend_kind: BackendKind, tmp_path: Path) -> AsyncIterator[Handle]:
    found = await (
        _postgres(backend_kind) if backend_kind.name == "postgres" else _sqlite(tmp_path)
    )
    yield found
    await found.close()


def service(handle: Handle, master: bytes = b"m" * 32) -> SecretService:
    return SecretService(handle.store, KekRegistry(handle.store, LocalKeyProvider(master)))


def event(tenant_id: str) -> AuditEvent:
    return AuditEvent("secret.put", ACTOR, tenant_id=tenant_id)


async def test_versions_are_claimed_once(handle: Handle) -> None:
    store, local = handle.store, LocalKeyProvider(os.urandom(32))
    assert await store.next_version("t_a", "db") == 1
    sealed = await seal(local, KekRef("local", "t_a", 1), "t_a", "db", 1, SecretValue("v"), 1.0)
    assert await store.add_version(sealed, event("t_a"))
    assert not await store.add_version(sealed, event("t_a"))  # the same version again
    assert await store.next_version("t_a", "db") == 2
    assert await store.get_version("t_a", "db", None) == sealed
    assert await store.get_version("t_a", "db", 1) == sealed
    assert await store.get_version("t_b", "db", 1) is None
    assert [e["action"] for e in await handle.audit()] == ["secret.put"]


async def test_service_round_trip_list_delete_and_audit(handle: Handle) -> None:
    svc = service(handle)
    await svc.put("t_a", "acme", "db", SecretValue(CANARY), ACTOR, CTX)
    await svc.put("t_a", "acme", "db", SecretValue("two"), ACTOR, CTX)
    await svc.put("t_b", "beta", "db", SecretValue("beta"), ACTOR, CTX)
    assert [(m.name, m.latest_version, m.versions) for m in await svc.list("t_a")] == [("db", 2, 2)]
    assert await svc.reveal("t_a", "db", 1) == (SecretValue(CANARY), 1)
    await svc.delete("t_a", "db", ACTOR, CTX)
    assert await svc.list("t_a") == []
    assert [m.name for m in await svc.list("t_b")] == ["db"]
    assert (await svc.put("t_a", "acme", "db", SecretValue("three"), ACTOR, CTX))[1] == 3
    records = await handle.audit()
    assert [r["action"] for r in records].count("secret.put") == 4
    assert CANARY not in json.dumps(records)


async def test_swapped_rows_between_tenants_do_not_decrypt(handle: Handle) -> None:
    svc = service(handle)
    await svc.put("t_a", "acme", "db", SecretValue("a-value"), ACTOR, CTX)
    await svc.put("t_b", "beta", "db", SecretValue("b-value"), ACTOR, CTX)
    await handle.execute("UPDATE secret_versions SET tenant_id = 'tmp' WHERE tenant_id = 't_a'")
    await handle.execute("UPDATE secret_versions SET tenant_id = 't_a' WHERE tenant_id = 't_b'")
    await handle.execute("UPDATE secret_versions SET tenant_id = 't_b' WHERE tenant_id = 'tmp'")
    for tenant in ("t_a", "t_b"):
        with pytest.raises((EnvelopeError, ProviderError)):
            await svc.reveal(tenant, "db", None)


async def test_rotation_rewraps_and_keeps_every_value(handle: Handle) -> None:
    svc = service(handle)
    for i in range(3):
        await svc.put("t_a", "acme", f"s{i}", SecretValue(f"value-{i}"), ACTOR, CTX)
    done = await svc.rotate_kek("t_a", ACTOR, CTX)
    assert (done.new.version, done.rewrapped) == (2, 3)
    assert await handle.store.tenant_kek("t_a") == TenantKek(
        "t_a", KekRef("local", "t_a", 2), (await handle.store.tenant_kek("t_a")).updated_at
    )  # type: ignore[union-attr]
    assert all(m.kek.version == 2 for m in await svc.list("t_a"))
    for i in range(3):
        assert await svc.reveal("t_a", f"s{i}", None) == (SecretValue(f"value-{i}"), 1)


async def test_replay_keys_are_accepted_once_until_they_expire(handle: Handle) -> None:
    store = handle.store
    assert await store.first_use("k1", expires_at=100.0, now=50.0)
    assert not await store.first_use("k1", expires_at=100.0, now=60.0)
    assert await store.first_use("k1", expires_at=200.0, now=150.0)  # expired, then new
