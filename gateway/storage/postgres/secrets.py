"""The PostgreSQL `SecretStore`: the `gateway.secret_*` tables (migration 0006).

Guarantees: rows hold ciphertext, nonces, wrapped data keys and metadata only; every change
and its audit event commit in one transaction (all or nothing); a version number is claimed
once per (tenant, name) across every replica (the head row's conditional upsert) and never
reused, even after deletion; backend failures surface as `StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import asyncpg

from gateway.audit.events import AuditEvent
from gateway.secrets import rows
from gateway.secrets.envelope import SealedSecret
from gateway.secrets.ports import Rewrap, SecretMeta, TenantKek
from gateway.storage.ports import StoreUnavailable
from gateway.storage.postgres.audit import append_event
from gateway.storage.postgres.database import PostgresDatabase, rowcount

__all__ = ["PostgresSecretStore"]


def q(template: str) -> str:
    return rows.sql(template, pg=True)


@contextlib.asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    """Maps asyncpg's exceptions onto the port's (outages arrive already mapped)."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        raise StoreUnavailable(f"secret store: {type(exc).__name__}") from exc


class PostgresSecretStore:
    """Secrets in PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def tenant_kek(self, tenant_id: str) -> TenantKek | None:
        async with _translated():
            row = await self._db.fetchrow(q(rows.KEK), tenant_id)
        return None if row is None else rows.to_tenant_kek(tuple(row))

    async def set_tenant_kek(self, kek: TenantKek, event: AuditEvent | None) -> None:
        async with _translated(), self._db.transaction() as conn:
            if event is not None:
                await append_event(conn, event)
            await conn.execute(q(rows.SET_KEK), *rows.kek_params(kek))

    async def next_version(self, tenant_id: str, name: str) -> int:
        async with _translated():
            value = await self._db.fetchval(q(rows.HEAD), tenant_id, name)
        return 1 if value is None else int(value) + 1

    async def add_version(self, sealed: SealedSecret, event: AuditEvent) -> bool:
        async with _translated(), self._db.transaction() as conn:
            status = await conn.execute(
                q(rows.CLAIM), sealed.tenant_id, sealed.name, sealed.version
            )
            if rowcount(status) != 1:
                return False  # SECURITY: a version number is never written twice
            await conn.execute(q(rows.INSERT), *rows.sealed_row(sealed))
            await append_event(conn, event)
        return True

    async def get_version(
        self, tenant_id: str, name: str, version: int | None
    ) -> SealedSecret | None:
        async with _translated():
            if version is None:
                row = await self._db.fetchrow(q(rows.LATEST), tenant_id, name)
            else:
                row = await self._db.fetchrow(q(rows.VERSION), tenant_id, name, version)
        return None if row is None else rows.to_sealed(tuple(row))

    async def list_secrets(self, tenant_id: str) -> list[SecretMeta]:
        async with _translated():
            found = await self._db.fetch(q(rows.LIST), tenant_id, tenant_id)
        return [rows.to_meta(tuple(row)) for row in found]

    async def delete_secret(self, tenant_id: str, name: str, event: AuditEvent) -> bool:
        async with _translated(), self._db.transaction() as conn:
            if rowcount(await conn.execute(q(rows.DELETE), tenant_id, name)) == 0:
                return False
            await append_event(conn, event)
        return True

    async def tenant_versions(self, tenant_id: str) -> list[SealedSecret]:
        async with _translated():
            found = await self._db.fetch(q(rows.TENANT_VERSIONS), tenant_id)
        return [rows.to_sealed(tuple(row)) for row in found]

    async def rewrap(
        self, tenant_id: str, rewraps: Sequence[Rewrap], kek: TenantKek, event: AuditEvent
    ) -> int:
        changed = 0
        async with _translated(), self._db.transaction() as conn:
            for item in rewraps:
                status = await conn.execute(q(rows.REWRAP), *rows.rewrap_params(tenant_id, item))
                changed += rowcount(status)
            await conn.execute(q(rows.SET_KEK), *rows.kek_params(kek))
            await append_event(conn, event)
        return changed

    async def record(self, event: AuditEvent) -> None:
        async with _translated(), self._db.transaction() as conn:
            await append_event(conn, event)

    async def first_use(self, key: str, expires_at: float, now: float) -> bool:
        async with _translated(), self._db.transaction() as conn:
            await conn.execute(q(rows.EXPIRE), now)
            return rowcount(await conn.execute(q(rows.REMEMBER), key, expires_at)) == 1
