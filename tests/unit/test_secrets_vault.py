"""The Vault transit provider against the loopback fake, alone and under the service."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.audit.events import Actor, RequestContext
from gateway.secrets.kek import KekRegistry
from gateway.secrets.ports import KekRef, ProviderError, TenantKek
from gateway.secrets.providers import LocalKeyProvider, VaultTransitProvider
from gateway.secrets.service import SecretService
from gateway.secrets.values import SecretValue
from gateway.secrets.wiring import vault_provider
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.secrets import SqliteSecretStore
from tests.support.fake_vault import FakeVault, run_fake_vault

ACTOR = Actor("user", "u_admin")
CTX = RequestContext()
CANARY = "canary-vault-0b7d"


@pytest.fixture
async def vault() -> AsyncIterator[FakeVault]:
    async with run_fake_vault() as fake:
        fake.create("acme-kek")
        yield fake


@pytest.fixture
async def provider(vault: FakeVault) -> AsyncIterator[VaultTransitProvider]:
    async with aiohttp.ClientSession() as session:
        yield VaultTransitProvider(session, vault.url, vault.token)


async def test_wrap_unwrap_rotate(provider: VaultTransitProvider, vault: FakeVault) -> None:
    kek = KekRef("vault", "acme-kek", 1)
    dek = os.urandom(32)
    used, wrapped = await provider.wrap(kek, dek, b"aad")
    assert used == kek and wrapped.startswith(b"vault:v1:")
    assert await provider.unwrap(kek, wrapped, b"aad") == dek
    with pytest.raises(ProviderError):
        await provider.unwrap(kek, wrapped, b"other-aad")
    assert await provider.rotate(kek) == KekRef("vault", "acme-kek", 2)
    used, rewrapped = await provider.wrap(kek, dek, b"aad")
    assert used.version == 2 and rewrapped.startswith(b"vault:v2:")
    assert await provider.unwrap(used, wrapped, b"aad") == dek  # old versions still decrypt
    assert all(dek not in body for body in vault.bodies)  # only base64 travels, never logged


async def test_failures_are_provider_errors_without_detail(vault: FakeVault) -> None:
    async with aiohttp.ClientSession() as session:
        wrong = VaultTransitProvider(session, vault.url, "wrong-token")
        with pytest.raises(ProviderError, match="HTTP 403"):
            await wrong.wrap(KekRef("vault", "acme-kek", 1), os.urandom(32), b"a")
        right = VaultTransitProvider(session, vault.url, vault.token)
        with pytest.raises(ProviderError, match="HTTP 400"):
            await right.wrap(KekRef("vault", "no-such-key", 1), os.urandom(32), b"a")
        with pytest.raises(ProviderError):
            await right.wrap(KekRef("vault", "../sys", 1), os.urandom(32), b"a")
        gone = VaultTransitProvider(session, "http://127.0.0.1:9", vault.token)
        with pytest.raises(ProviderError, match="unreachable"):
            await gone.wrap(KekRef("vault", "acme-kek", 1), os.urandom(32), b"a")


async def test_service_moves_a_tenant_to_its_own_transit_key_and_rotates(
    tmp_path: Path, vault: FakeVault
) -> None:
    env = {"VAULT_ADDR": vault.url, "VAULT_TOKEN": vault.token}
    db = await SqliteDatabase.open(tmp_path / "gateway.db")
    try:
        async with vault_provider(env) as transit:
            assert transit is not None
            store = SqliteSecretStore(db)
            service = SecretService(
                store, KekRegistry(store, LocalKeyProvider(os.urandom(32)), transit)
            )
            await service.put("t_a", "acme", "db", SecretValue(CANARY), ACTOR, CTX)
            byok = TenantKek("t_a", KekRef("vault", "acme-kek", 1), 0.0)
            assert (await service.set_kek("t_a", byok, ACTOR, CTX)).rewrapped == 1
            await service.put("t_a", "acme", "db", SecretValue("second"), ACTOR, CTX)
            done = await service.rotate_kek("t_a", ACTOR, CTX)
            assert done.new == KekRef("vault", "acme-kek", 2) and done.rewrapped == 2
            assert await service.reveal("t_a", "db", 1) == (SecretValue(CANARY), 1)
            assert await service.reveal("t_a", "db", 2) == (SecretValue("second"), 2)
            assert all(CANARY.encode() not in body for body in vault.bodies)
        async with vault_provider({}) as none:
            assert none is None
    finally:
        await db.close()
