"""Building the secrets area over the configured stores: the one place naming its adapters.

Vault transit is available when `VAULT_ADDR` and `VAULT_TOKEN` are set (the standard Vault
client variables; `VAULT_TRANSIT_MOUNT` overrides the mount, default `transit`). Without them
tenants use the local provider or a supplied key, and a Vault-wrapped record fails closed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping

import aiohttp

from gateway.secrets.kek import KekRegistry
from gateway.secrets.ports import SecretStore
from gateway.secrets.providers import LocalKeyProvider, VaultTransitProvider
from gateway.secrets.service import SecretService
from gateway.storage.factory import Stores
from gateway.storage.postgres.secrets import PostgresSecretStore
from gateway.storage.sqlite.secrets import SqliteSecretStore
from gateway.storage.state import StateDir, ensure_master_key

VAULT_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=3)


def secret_store(stores: Stores) -> SecretStore:
    """The secret store over the same database as the other stores."""
    if stores.postgres is not None:
        return PostgresSecretStore(stores.postgres)
    assert stores.sqlite is not None
    return SqliteSecretStore(stores.sqlite)


@contextlib.asynccontextmanager
async def vault_provider(
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[VaultTransitProvider | None]:
    """The Vault transit provider when the environment configures one (its session closed on
    exit), else None."""
    env = os.environ if env is None else env
    address, token = env.get("VAULT_ADDR"), env.get("VAULT_TOKEN")
    if not address or not token:
        yield None
        return
    mount = env.get("VAULT_TRANSIT_MOUNT") or "transit"
    async with aiohttp.ClientSession(timeout=VAULT_TIMEOUT) as session:
        yield VaultTransitProvider(session, address, token, mount)


def secret_service(
    stores: Stores, state: StateDir, vault: VaultTransitProvider | None
) -> SecretService:
    """The secrets service; the local provider's KEKs derive from the state's `master.key`
    (which `ensure_master_key` refuses when its mode is wider than 0600)."""
    store = secret_store(stores)
    local = LocalKeyProvider(ensure_master_key(state))
    return SecretService(store, KekRegistry(store, local, vault))


@contextlib.asynccontextmanager
async def open_secret_service(stores: Stores, state: StateDir) -> AsyncIterator[SecretService]:
    """The service with its providers, for the CLI and the running gateway alike."""
    async with vault_provider() as vault:
        yield secret_service(stores, state, vault)
