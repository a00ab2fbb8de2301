"""The secrets service over the embedded store: versions, listing, deletion, KEK rotation,
BYOK, and what reaches the database and the audit log."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.audit.events import Actor, RequestContext
from gateway.secrets.envelope import EnvelopeError
from gateway.secrets.kek import KekRegistry
from gateway.secrets.ports import KekRef, ProviderError
from gateway.secrets.providers import LocalKeyProvider
from gateway.secrets.service import SecretError, SecretService
from gateway.secrets.values import SecretValue
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.secrets import SqliteSecretStore

ACTOR = Actor("user", "u_admin")
CTX = RequestContext()
CANARY = "canary-service-93d1e"


@dataclass
class World:
    db: SqliteDatabase
    service: SecretService
    path: Path

    async def audit(self, tenant_id: str) -> list[dict[str, object]]:
        rows = await self.db.fetchall(
            "SELECT record FROM audit_events WHERE tenant_id = ? ORDER BY seq", (tenant_id,)
        )
        return [json.loads(r[0]) for r in rows]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    db = await SqliteDatabase.open(tmp_path / "gateway.db")
    store = SqliteSecretStore(db)
    service = SecretService(store, KekRegistry(store, LocalKeyProvider(os.urandom(32))))
    yield World(db, service, tmp_path / "gateway.db")
    await db.close()


async def test_versions_round_trip(world: World) -> None:
    service = world.service
    assert await service.put("t_a", "acme", "db", SecretValue("one"), ACTOR, CTX) == (
        "secret://acme/db#1",
        1,
    )
    assert (await service.put("t_a", "acme", "db", SecretValue("two"), ACTOR, CTX))[1] == 2
    assert await service.reveal("t_a", "db", None) == (SecretValue("two"), 2)
    assert await service.reveal("t_a", "db", 1) == (SecretValue("one"), 1)
    assert await service.reveal("t_a", "db", 3) is None
    assert await service.reveal("t_b", "db", None) is None


async def test_list_is_metadata_and_delete_destroys_all_versions(world: World) -> None:
    service = world.service
    for value in ("a", "b"):
        await service.put("t_a", "acme", "db", SecretValue(value), ACTOR, CTX)
    await service.put("t_a", "acme", "api", SecretValue("c"), ACTOR, CTX)
    listed = await service.list("t_a")
    assert [(m.name, m.latest_version, m.versions) for m in listed] == [("api", 1, 1), ("db", 2, 2)]
    assert listed[0].kek == KekRef("local", "t_a", 1)
    await service.delete("t_a", "db", ACTOR, CTX)
    assert await service.reveal("t_a", "db", 1) is None
    with pytest.raises(SecretError) as info:
        await service.delete("t_a", "db", ACTOR, CTX)
    assert info.value.status == 404
    # A version number is never reused after deletion.
    assert (await service.put("t_a", "acme", "db", SecretValue("d"), ACTOR, CTX))[1] == 3


async def test_bad_names_are_refused(world: World) -> None:
    for name in ("", "../x", "a/b", ".x", "x" * 200):
        with pytest.raises(SecretError) as info:
            await world.service.put("t_a", "acme", name, SecretValue("v"), ACTOR, CTX)
        assert info.value.status == 422


async def test_ciphertext_swapped_between_tenants_in_the_database_fails(world: World) -> None:
    service = world.service
    await service.put("t_a", "acme", "db", SecretValue("a-secret"), ACTOR, CTX)
    await service.put("t_b", "beta", "db", SecretValue("b-secret"), ACTOR, CTX)
    async with world.db.transaction() as conn:
        await conn.execute(
            "UPDATE secret_versions SET ciphertext = (SELECT ciphertext FROM secret_versions "
            "WHERE tenant_id = 't_a'), nonce = (SELECT nonce FROM secret_versions WHERE "
            "tenant_id = 't_a'), wrapped_dek = (SELECT wrapped_dek FROM secret_versions WHERE "
            "tenant_id = 't_a') WHERE tenant_id = 't_b'"
        )
    with pytest.raises((EnvelopeError, ProviderError)):
        await service.reveal("t_b", "db", None)
    assert await service.reveal("t_a", "db", None) == (SecretValue("a-secret"), 1)


async def test_rotate_kek_rewraps_without_touching_values(world: World) -> None:
    service = world.service
    for value in ("v1", "v2"):
        await service.put("t_a", "acme", "db", SecretValue(value), ACTOR, CTX)
    before = await world.db.fetchall("SELECT ciphertext, nonce, wrapped_dek FROM secret_versions")
    done = await service.rotate_kek("t_a", ACTOR, CTX)
    assert (done.old.version, done.new.version, done.rewrapped) == (1, 2, 2)
    after = await world.db.fetchall(
        "SELECT ciphertext, nonce, wrapped_dek, kek_version FROM secret_versions"
    )
    assert [(r[0], r[1]) for r in before] == [(r[0], r[1]) for r in after]
    assert all(b[2] != a[2] and a[3] == 2 for b, a in zip(before, after, strict=True))
    assert await service.reveal("t_a", "db", 1) == (SecretValue("v1"), 1)
    assert (await service.put("t_a", "acme", "db", SecretValue("v3"), ACTOR, CTX))[1] == 3
    assert (await service.list("t_a"))[0].kek == KekRef("local", "t_a", 2)
    await service.rotate_kek("t_a", ACTOR, CTX)
    assert [await service.reveal("t_a", "db", v) for v in (1, 2, 3)] == [
        (SecretValue(f"v{v}"), v) for v in (1, 2, 3)
    ]
    actions = [e["action"] for e in await world.audit("t_a")]
    assert actions.count("secret.kek.rotate") == 2


async def test_byok_key_and_switch_back(world: World) -> None:
    service = world.service
    await service.put("t_a", "acme", "db", SecretValue("before"), ACTOR, CTX)
    key = os.urandom(32)
    setting = service.keks.byok_setting("t_a", key, await service.keks.current("t_a"))
    done = await service.set_kek("t_a", setting, ACTOR, CTX)
    assert done.new == KekRef("byok", "t_a", 1) and done.rewrapped == 1
    await service.put("t_a", "acme", "db", SecretValue("after"), ACTOR, CTX)
    assert await service.reveal("t_a", "db", 1) == (SecretValue("before"), 1)
    assert await service.reveal("t_a", "db", 2) == (SecretValue("after"), 2)
    raw = world.path.read_bytes() + world.path.with_name("gateway.db-wal").read_bytes()
    assert key not in raw and base64.b64encode(key) not in raw
    with pytest.raises(SecretError):
        await service.rotate_kek("t_a", ACTOR, CTX)  # a supplied key is replaced, not rotated
    other = service.keks.byok_setting("t_a", os.urandom(32), await service.keks.current("t_a"))
    assert (await service.set_kek("t_a", other, ACTOR, CTX)).new.version == 2
    assert await service.reveal("t_a", "db", 2) == (SecretValue("after"), 2)


async def test_nothing_in_the_database_or_audit_holds_a_value(world: World) -> None:
    service = world.service
    await service.put("t_a", "acme", "db", SecretValue(CANARY), ACTOR, CTX)
    await service.rotate_kek("t_a", ACTOR, CTX)
    assert (await service.reveal("t_a", "db", None))[0] == SecretValue(CANARY)  # type: ignore[index]
    await world.db.writer.execute("PRAGMA wal_checkpoint(PASSIVE)")
    for path in world.path.parent.iterdir():
        assert CANARY.encode() not in path.read_bytes(), path
    records = json.dumps(await world.audit("t_a"))
    assert CANARY not in records
    assert "secret.put" in records and "local:t_a:v1" in records
