"""The secrets service: put, list, delete, reveal, and KEK rotation for one tenant at a time.

Guarantees:

* values are sealed (see `envelope`) before they reach the store, and opened only in memory
  by `reveal`; audit details name the secret, its version and its KEK, never its value;
* each put creates a new version (`SecretError` 409 after repeated races, never an overwrite);
* a KEK rotation or change re-wraps every data key of the tenant in memory and stores all of
  them with the new KEK setting in one transaction; values are never re-encrypted, and if any
  data key cannot be unwrapped nothing changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.audit.events import Actor, AuditEvent, Outcome, RequestContext
from gateway.secrets.envelope import EnvelopeError, SealedSecret, associated_data, open_sealed, seal
from gateway.secrets.kek import KekRegistry
from gateway.secrets.ports import (
    KekRef,
    ProviderError,
    Rewrap,
    SecretMeta,
    SecretStore,
    TenantKek,
)
from gateway.secrets.refs import format_ref, valid_name
from gateway.secrets.values import SecretValue

PUT_ATTEMPTS = 3


class SecretError(Exception):
    """A refused secrets operation: HTTP status, a stable code, and a message without values."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of a KEK rotation or change."""

    old: KekRef
    new: KekRef
    rewrapped: int


def event(
    action: str, actor: Actor, ctx: RequestContext, tenant_id: str, target: str | None,
    details: dict[str, object], outcome: Outcome = "success",
) -> AuditEvent:  # fmt: skip
    """An audit event of the secrets area (details must never hold a value)."""
    return AuditEvent(action, actor, outcome, tenant_id, target, ctx, dict(details))


def check_name(name: str) -> str:
    """`name` if it may name a secret, else `SecretError` 422."""
    if not valid_name(name):
        raise SecretError(422, "invalid-name", "a secret name is 1-128 of A-Z a-z 0-9 . _ -")
    return name


class SecretService:
    """Envelope-encrypted secrets over a `SecretStore` and the tenants' KEKs."""

    def __init__(
        self, store: SecretStore, keks: KekRegistry, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.keks = keks
        self.clock = clock

    async def put(
        self, tenant_id: str, tenant_slug: str, name: str, value: SecretValue,
        actor: Actor, ctx: RequestContext,
    ) -> tuple[str, int]:  # fmt: skip
        """Stores `value` as the next version of `name`; returns (reference, version)."""
        check_name(name)
        setting, provider = await self.keks.for_tenant(tenant_id)
        for _ in range(PUT_ATTEMPTS):
            version = await self.store.next_version(tenant_id, name)
            try:
                sealed = await seal(
                    provider, setting.kek, tenant_id, name, version, value, self.clock()
                )
            except ValueError as exc:
                raise SecretError(413, "value-too-large", str(exc)) from None
            details = {"name": name, "version": version, "kek": sealed.kek.label}
            audit = event("secret.put", actor, ctx, tenant_id, name, details)
            if await self.store.add_version(sealed, audit):
                return format_ref(tenant_slug, name, version), version
        raise SecretError(409, "conflict", "the secret changed concurrently; retry")

    async def list(self, tenant_id: str) -> list[SecretMeta]:
        """Every secret of the tenant: metadata only."""
        return await self.store.list_secrets(tenant_id)

    async def delete(self, tenant_id: str, name: str, actor: Actor, ctx: RequestContext) -> None:
        """Destroys every version of `name`; `SecretError` 404 when there is none."""
        audit = event("secret.delete", actor, ctx, tenant_id, check_name(name), {"name": name})
        if not await self.store.delete_secret(tenant_id, name, audit):
            raise SecretError(404, "not-found", "secret not found")

    async def reveal(
        self, tenant_id: str, name: str, version: int | None
    ) -> tuple[SecretValue, int] | None:
        """The plaintext of a version (latest when None) in memory, or None when missing."""
        sealed = await self.store.get_version(tenant_id, name, version)
        if sealed is None:
            return None
        return await self.open(sealed), sealed.version

    async def open(self, sealed: SealedSecret) -> SecretValue:
        """Opens a stored version with the provider its record names."""
        setting = await self.keks.current(sealed.tenant_id)
        # SECURITY: a record whose tenant is not the one asked for never reaches a provider.
        provider = self.keks.provider(sealed.kek, setting)
        return await open_sealed(provider, sealed)

    async def rotate_kek(self, tenant_id: str, actor: Actor, ctx: RequestContext) -> Rotation:
        """A new version of the tenant's KEK (same provider and key), every data key re-wrapped."""
        old, provider = await self.keks.for_tenant(tenant_id)
        try:
            new_ref = await provider.rotate(old.kek)
        except ProviderError as exc:
            raise SecretError(409, "kek-rotation", str(exc)) from None
        new = TenantKek(tenant_id, new_ref, self.clock(), old.material)
        return await self._rewrap_all(tenant_id, old, new, "secret.kek.rotate", actor, ctx)

    async def set_kek(
        self, tenant_id: str, new: TenantKek, actor: Actor, ctx: RequestContext
    ) -> Rotation:
        """Moves the tenant to another KEK (Vault key, supplied key, local), re-wrapping all."""
        old = await self.keks.current(tenant_id)
        return await self._rewrap_all(tenant_id, old, new, "secret.kek.set", actor, ctx)

    async def _rewrap_all(
        self, tenant_id: str, old: TenantKek, new: TenantKek, action: str,
        actor: Actor, ctx: RequestContext,
    ) -> Rotation:  # fmt: skip
        rewraps = []
        target = self.keks.provider(new.kek, new)
        try:
            for sealed in await self.store.tenant_versions(tenant_id):
                aad = associated_data(tenant_id, sealed.name, sealed.version)
                dek = await self.keks.provider(sealed.kek, old).unwrap(
                    sealed.kek, sealed.wrapped_dek, aad
                )
                used, wrapped = await target.wrap(new.kek, dek, aad)
                rewraps.append(Rewrap(sealed.name, sealed.version, sealed.kek, used, wrapped))
        except (ProviderError, EnvelopeError) as exc:
            raise SecretError(409, "kek-rotation", f"nothing changed: {exc}") from None
        details = {"from": old.kek.label, "to": new.kek.label, "versions": len(rewraps)}
        audit = event(action, actor, ctx, tenant_id, None, details)
        count = await self.store.rewrap(tenant_id, rewraps, new, audit)
        return Rotation(old.kek, new.kek, count)
