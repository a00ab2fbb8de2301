"""The secrets area's ports: key providers (who holds KEKs) and the secret store.

Guarantees every adapter keeps: the store holds ciphertext, wrapped data keys and metadata
only; every change is written together with its audit event (one transaction, all or
nothing); backend failures raise `StoreUnavailable`; a provider never returns or logs a
KEK, and its errors (`ProviderError`) never carry key material or plaintext.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateway.audit.events import AuditEvent

if TYPE_CHECKING:
    from gateway.secrets.envelope import SealedSecret


class ProviderError(Exception):
    """A key provider could not wrap or unwrap (unreachable, refused, wrong key)."""


@dataclass(frozen=True, slots=True)
class KekRef:
    """Which key-encryption key wrapped a data key: provider kind, key id and key version."""

    provider: str
    key_id: str
    version: int

    @property
    def label(self) -> str:
        """`provider:key_id:vN`, the audit field naming a KEK (never the key itself)."""
        return f"{self.provider}:{self.key_id}:v{self.version}"


@dataclass(frozen=True, slots=True)
class TenantKek:
    """A tenant's current KEK: the one new data keys are wrapped with.

    `material` is only set for BYOK key-wrapping keys, and only ever stored wrapped by the
    gateway's own master-derived key.
    """

    tenant_id: str
    kek: KekRef
    updated_at: float
    material: bytes | None = None


@dataclass(frozen=True, slots=True)
class SecretMeta:
    """What listing shows of a secret: never its value."""

    name: str
    latest_version: int
    versions: int
    created_at: float
    updated_at: float
    kek: KekRef


@dataclass(frozen=True, slots=True)
class Rewrap:
    """A new wrapping of one version's data key."""

    name: str
    version: int
    old: KekRef
    new: KekRef
    wrapped_dek: bytes


class KeyProvider(Protocol):
    """Wraps and unwraps data keys under a KEK it holds; `aad` binds the wrapped key."""

    async def wrap(self, kek: KekRef, dek: bytes, aad: bytes) -> tuple[KekRef, bytes]:
        """The wrapped `dek` and the exact KEK (version included) that wrapped it."""
        ...

    async def unwrap(self, kek: KekRef, wrapped: bytes, aad: bytes) -> bytes:
        """The data key, or `ProviderError`."""
        ...

    async def rotate(self, kek: KekRef) -> KekRef:
        """A new current version of the KEK `kek` names."""
        ...


class SecretStore(Protocol):
    """Envelope-encrypted secret versions and tenants' KEK settings."""

    async def tenant_kek(self, tenant_id: str) -> TenantKek | None:
        """The tenant's stored KEK setting; None: it never chose one (local, version 1)."""
        ...

    async def set_tenant_kek(self, kek: TenantKek, event: AuditEvent | None) -> None:
        """Stores the tenant's KEK setting (with its audit event, when given)."""
        ...

    async def next_version(self, tenant_id: str, name: str) -> int:
        """The version a new put would claim: one past every version ever claimed."""
        ...

    async def add_version(self, sealed: SealedSecret, event: AuditEvent) -> bool:
        """Stores a new version; False (nothing written) if that version already exists."""
        ...

    async def get_version(
        self, tenant_id: str, name: str, version: int | None
    ) -> SealedSecret | None:
        """One stored version of the tenant's secret (the latest when `version` is None)."""
        ...

    async def list_secrets(self, tenant_id: str) -> list[SecretMeta]:
        """The tenant's secrets by name: metadata of the latest version only."""
        ...

    async def delete_secret(self, tenant_id: str, name: str, event: AuditEvent) -> bool:
        """Destroys every version; False (nothing written) when there was none."""
        ...

    async def tenant_versions(self, tenant_id: str) -> list[SealedSecret]:
        """Every stored version of the tenant (for re-wrapping)."""
        ...

    async def rewrap(
        self, tenant_id: str, rewraps: Sequence[Rewrap], kek: TenantKek, event: AuditEvent
    ) -> int:
        """Replaces wrapped data keys (only rows still under `old`) and sets the tenant's KEK."""
        ...

    async def record(self, event: AuditEvent) -> None:
        """Appends an audit event on its own (resolves, webhook verifications)."""
        ...

    async def first_use(self, key: str, expires_at: float, now: float) -> bool:
        """True the first time `key` is presented before `expires_at` (replay protection)."""
        ...
