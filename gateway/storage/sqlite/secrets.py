"""The SQLite `SecretStore`: envelope-encrypted secret versions in the embedded database (0008).

Guarantees: rows hold ciphertext, nonces, wrapped data keys and metadata only; every change
and its audit event commit in one write-locked transaction (all or nothing); a version number
is claimed once per (tenant, name) and never reused, even after deletion; backend failures
surface as `StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence

from gateway.audit.events import AuditEvent
from gateway.secrets import rows
from gateway.secrets.envelope import SealedSecret
from gateway.secrets.ports import Rewrap, SecretMeta, TenantKek
from gateway.storage.ports import StoreUnavailable
from gateway.storage.sqlite.audit import append_event
from gateway.storage.sqlite.database import SqliteDatabase

__all__ = ["SqliteSecretStore"]


def q(template: str) -> str:
    return rows.sql(template, pg=False)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Maps SQLite's exceptions onto the port's."""
    try:
        yield
    except (sqlite3.Error, OSError, ValueError) as exc:  # ValueError: connection closed
        raise StoreUnavailable(f"secret store: {type(exc).__name__}") from exc


class SqliteSecretStore:
    """Secrets in the embedded database."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def tenant_kek(self, tenant_id: str) -> TenantKek | None:
        with _translated():
            row = await self._db.fetchone(q(rows.KEK), (tenant_id,))
        return None if row is None else rows.to_tenant_kek(tuple(row))

    async def set_tenant_kek(self, kek: TenantKek, event: AuditEvent | None) -> None:
        with _translated():
            async with self._db.transaction() as conn:
                if event is not None:
                    await append_event(conn, event)
                await conn.execute(q(rows.SET_KEK), rows.kek_params(kek))

    async def next_version(self, tenant_id: str, name: str) -> int:
        with _translated():
            row = await self._db.fetchone(q(rows.HEAD), (tenant_id, name))
        return 1 if row is None else int(row[0]) + 1

    async def add_version(self, sealed: SealedSecret, event: AuditEvent) -> bool:
        with _translated():
            async with self._db.transaction() as conn:
                cur = await conn.execute(
                    q(rows.CLAIM), (sealed.tenant_id, sealed.name, sealed.version)
                )
                if cur.rowcount != 1:
                    return False  # SECURITY: a version number is never written twice
                await conn.execute(q(rows.INSERT), rows.sealed_row(sealed))
                await append_event(conn, event)
        return True

    async def get_version(
        self, tenant_id: str, name: str, version: int | None
    ) -> SealedSecret | None:
        with _translated():
            if version is None:
                row = await self._db.fetchone(q(rows.LATEST), (tenant_id, name))
            else:
                row = await self._db.fetchone(q(rows.VERSION), (tenant_id, name, version))
        return None if row is None else rows.to_sealed(tuple(row))

    async def list_secrets(self, tenant_id: str) -> list[SecretMeta]:
        with _translated():
            found = await self._db.fetchall(q(rows.LIST), (tenant_id, tenant_id))
        return [rows.to_meta(tuple(row)) for row in found]

    async def delete_secret(self, tenant_id: str, name: str, event: AuditEvent) -> bool:
        with _translated():
            async with self._db.transaction() as conn:
                cur = await conn.execute(q(rows.DELETE), (tenant_id, name))
                if cur.rowcount == 0:
                    return False
                await append_event(conn, event)
        return True

    async def tenant_versions(self, tenant_id: str) -> list[SealedSecret]:
        with _translated():
            found = await self._db.fetchall(q(rows.TENANT_VERSIONS), (tenant_id,))
        return [rows.to_sealed(tuple(row)) for row in found]

    async def rewrap(
        self, tenant_id: str, rewraps: Sequence[Rewrap], kek: TenantKek, event: AuditEvent
    ) -> int:
        changed = 0
        with _translated():
            async with self._db.transaction() as conn:
                for item in rewraps:
                    cur = await conn.execute(q(rows.REWRAP), rows.rewrap_params(tenant_id, item))
                    changed += max(cur.rowcount, 0)
                await conn.execute(q(rows.SET_KEK), rows.kek_params(kek))
                await append_event(conn, event)
        return changed

    async def record(self, event: AuditEvent) -> None:
        with _translated():
            async with self._db.transaction() as conn:
                await append_event(conn, event)

    async def first_use(self, key: str, expires_at: float, now: float) -> bool:
        with _translated():
            async with self._db.transaction() as conn:
                await conn.execute(q(rows.EXPIRE), (now,))
                cur = await conn.execute(q(rows.REMEMBER), (key, expires_at))
                return cur.rowcount == 1
