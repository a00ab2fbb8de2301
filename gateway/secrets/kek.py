"""Which provider holds a tenant's KEK, and the tenant's current KEK.

Guarantees: a tenant without a stored setting uses the local provider (its KEK derived from
the master key, version 1); a record is unwrapped only by the provider its own `KekRef`
names; a BYOK key is opened from its stored wrapping in memory, per call, and never cached
or returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.secrets.ports import KekRef, KeyProvider, ProviderError, SecretStore, TenantKek
from gateway.secrets.providers import (
    BYOK,
    LOCAL,
    VAULT,
    AesKeyProvider,
    LocalKeyProvider,
    VaultTransitProvider,
)


def default_kek(tenant_id: str, now: float) -> TenantKek:
    """The setting of a tenant that never chose one: local, version 1."""
    return TenantKek(tenant_id, KekRef(LOCAL, tenant_id, 1), now)


class KekRegistry:
    """The key providers of this gateway and each tenant's current KEK."""

    def __init__(
        self,
        store: SecretStore,
        local: LocalKeyProvider,
        vault: VaultTransitProvider | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.local = local
        self.vault = vault
        self.clock = clock

    async def current(self, tenant_id: str) -> TenantKek:
        """The KEK new data keys of `tenant_id` are wrapped with."""
        found = await self.store.tenant_kek(tenant_id)
        return found if found is not None else default_kek(tenant_id, self.clock())

    def provider(self, kek: KekRef, setting: TenantKek) -> KeyProvider:
        """The provider that can (un)wrap under `kek`, for a tenant whose setting is `setting`."""
        if kek.provider == LOCAL:
            # SECURITY: a local KEK is the tenant's own derivation; another tenant's id fails.
            if kek.key_id != setting.tenant_id:
                raise ProviderError("a local KEK of another tenant")
            return self.local
        if kek.provider == VAULT:
            if self.vault is None:
                raise ProviderError("vault transit is not configured (VAULT_ADDR, VAULT_TOKEN)")
            return self.vault
        if kek.provider == BYOK and setting.material is not None and setting.kek == kek:
            key = self.local.open_material(setting.tenant_id, setting.material)
            return AesKeyProvider(kek, key)
        raise ProviderError(f"no provider holds KEK {kek.label}")

    async def for_tenant(self, tenant_id: str) -> tuple[TenantKek, KeyProvider]:
        """The tenant's current setting and the provider of its current KEK."""
        setting = await self.current(tenant_id)
        return setting, self.provider(setting.kek, setting)

    def byok_setting(self, tenant_id: str, key: bytes, previous: TenantKek) -> TenantKek:
        """A setting for a tenant-supplied 32-byte key-wrapping key (stored wrapped only)."""
        if len(key) != 32:
            raise ProviderError("a key-wrapping key is 32 bytes (base64 of 32 random bytes)")
        version = previous.kek.version + 1 if previous.kek.provider == BYOK else 1
        material = self.local.seal_material(tenant_id, key)
        return TenantKek(tenant_id, KekRef(BYOK, tenant_id, version), self.clock(), material)
