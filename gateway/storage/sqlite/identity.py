"""The SQLite `IdentityStore`: the `identity_*` tables of the embedded database (migration 0003).

Every write runs in one `SqliteDatabase.transaction()` that first appends the audit event and
then makes the change, so a failing change (a conflict, a missing row) rolls its event back.
Uniqueness is the database's job: `sqlite3.IntegrityError` becomes `Conflict(field)`.
Rows and records map through `identity_rows.SQLITE`, the mapping shared with PostgreSQL.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator

import aiosqlite

from gateway.audit.events import AuditEvent
from gateway.identity.errors import Conflict, NotFound
from gateway.identity.models import (
    ApiKey,
    ApiKeyRecord,
    Invitation,
    Membership,
    ServiceAccount,
    Tenant,
    User,
    UserCredentials,
)
from gateway.storage import identity_rows
from gateway.storage.ports import StoreUnavailable
from gateway.storage.sqlite.audit import append_event
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.identity_account import SqliteAccountRecords

__all__ = ["SqliteIdentityStore"]

_UNIQUE_FIELDS = {
    "identity_users.email": "email",
    "identity_tenants.slug": "tenant",
    "identity_memberships.tenant_id, identity_memberships.user_id": "membership",
    "identity_service_accounts.tenant_id, identity_service_accounts.name": "service_account",
    "identity_invitations.token_hash": "invitation",
}

_ROWS = identity_rows.SQLITE  # lists as JSON text, flags as 0/1

_TENANT = "SELECT id, slug, created_at, features, plan, upstream, require_mfa FROM identity_tenants"
_USER = "SELECT id, email, created_at, email_verified, password_hash FROM identity_users"
_MEMBERSHIP = "SELECT tenant_id, user_id, roles, created_at FROM identity_memberships"
_INVITATION = "SELECT id, tenant_id, email, role, expires_at, accepted_at FROM identity_invitations"
_ACCOUNT = "SELECT id, tenant_id, name, roles, created_at FROM identity_service_accounts"
_KEY = (
    "SELECT id, tenant_id, service_account_id, created_at, expires_at, revoked_at, secret_hash "
    "FROM identity_api_keys"
)


def _integrity_error(exc: sqlite3.IntegrityError) -> Exception:
    """The store error for a constraint violation (the original if it is not ours to map)."""
    message = str(exc)
    if message.startswith("UNIQUE constraint failed: "):
        columns = message.removeprefix("UNIQUE constraint failed: ")
        return Conflict(_UNIQUE_FIELDS.get(columns, columns.rpartition(".")[2]))
    if message.startswith("FOREIGN KEY constraint failed"):
        return NotFound("reference")
    return exc


class SqliteIdentityStore(SqliteAccountRecords):
    """`IdentityStore` over `SqliteDatabase`; see the port for the guarantees (the MFA and
    e-mail token methods are in `identity_account`)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    @contextlib.asynccontextmanager
    async def _write(self, event: AuditEvent) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction that already holds `event`; constraint errors are mapped."""
        try:
            async with self._db.transaction() as conn:
                # The event goes first: if the change below fails, the rollback takes it too.
                await append_event(conn, event)
                yield conn
        except sqlite3.IntegrityError as exc:
            mapped = _integrity_error(exc)
            if mapped is exc:
                raise
            raise mapped from None
        except sqlite3.OperationalError as exc:
            # Fail closed: the caller answers 503 rather than guessing.
            raise StoreUnavailable(f"identity store: {exc}") from exc

    async def _fetchone(self, sql: str, params: tuple[object, ...]) -> aiosqlite.Row | None:
        try:
            return await self._db.fetchone(sql, params)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"identity store: {exc}") from exc

    async def _fetchall(self, sql: str, params: tuple[object, ...]) -> list[aiosqlite.Row]:
        try:
            return await self._db.fetchall(sql, params)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"identity store: {exc}") from exc

    async def signup(
        self,
        tenant: Tenant,
        user: User,
        password_hash: str,
        membership: Membership,
        event: AuditEvent,
    ) -> None:
        async with self._write(event) as conn:
            await _insert(conn, "identity_tenants", _ROWS.tenant_row(tenant))
            await _insert(conn, "identity_users", _ROWS.user_row(user, password_hash))
            await _insert(conn, "identity_memberships", _ROWS.membership_row(membership))

    async def create_tenant(self, tenant: Tenant, event: AuditEvent) -> None:
        async with self._write(event) as conn:
            await _insert(conn, "identity_tenants", _ROWS.tenant_row(tenant))

    async def update_tenant_settings(self, tenant: Tenant, event: AuditEvent) -> None:
        row = _ROWS.tenant_row(tenant)
        async with self._write(event) as conn:
            cur = await conn.execute(
                "UPDATE identity_tenants SET features = ?, plan = ?, upstream = ?, "
                "require_mfa = ? WHERE id = ?",
                (row["features"], row["plan"], row["upstream"], row["require_mfa"], tenant.id),
            )
            if cur.rowcount != 1:
                raise NotFound("tenant")

    async def create_user(
        self, user: User, password_hash: str, membership: Membership, event: AuditEvent
    ) -> None:
        async with self._write(event) as conn:
            await _insert(conn, "identity_users", _ROWS.user_row(user, password_hash))
            await _insert(conn, "identity_memberships", _ROWS.membership_row(membership))

    async def accept_invitation(
        self,
        invitation_id: str,
        user: User,
        password_hash: str,
        membership: Membership,
        event: AuditEvent,
    ) -> None:
        async with self._write(event) as conn:
            # SECURITY: replay of an invitation; compare-and-set inside the write lock, so of
            # two racing acceptances exactly one flips accepted_at from NULL.
            cur = await conn.execute(
                "UPDATE identity_invitations SET accepted_at = ?, accepted_by = ? "
                "WHERE id = ? AND tenant_id = ? AND accepted_at IS NULL AND expires_at > ?",
                (user.created_at, user.id, invitation_id, membership.tenant_id, user.created_at),
            )
            if cur.rowcount != 1:
                raise Conflict("invitation")
            await _insert(conn, "identity_users", _ROWS.user_row(user, password_hash))
            await _insert(conn, "identity_memberships", _ROWS.membership_row(membership))

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        row = await self._fetchone(f"{_TENANT} WHERE id = ?", (tenant_id,))
        return _ROWS.tenant(row) if row else None

    async def get_tenant_by_slug(self, slug: str) -> Tenant | None:
        row = await self._fetchone(f"{_TENANT} WHERE slug = ?", (slug,))
        return _ROWS.tenant(row) if row else None

    async def get_user(self, user_id: str) -> User | None:
        row = await self._fetchone(f"{_USER} WHERE id = ?", (user_id,))
        return _ROWS.user(row) if row else None

    async def get_user_by_email(self, email: str) -> UserCredentials | None:
        row = await self._fetchone(f"{_USER} WHERE email = ?", (email,))
        return _ROWS.user_credentials(row) if row else None

    async def update_password_hash(
        self, user_id: str, password_hash: str, event: AuditEvent
    ) -> None:
        async with self._write(event) as conn:
            cur = await conn.execute(
                "UPDATE identity_users SET password_hash = ? WHERE id = ?",
                (password_hash, user_id),
            )
            if cur.rowcount != 1:
                raise NotFound("user")

    async def list_memberships(self, user_id: str) -> list[Membership]:
        rows = await self._fetchall(
            f"{_MEMBERSHIP} WHERE user_id = ? ORDER BY created_at, rowid", (user_id,)
        )
        return [_ROWS.membership(row) for row in rows]

    async def get_membership(self, tenant_id: str, user_id: str) -> Membership | None:
        row = await self._fetchone(
            f"{_MEMBERSHIP} WHERE tenant_id = ? AND user_id = ?", (tenant_id, user_id)
        )
        return _ROWS.membership(row) if row else None

    async def add_membership(self, membership: Membership, event: AuditEvent) -> None:
        async with self._write(event) as conn:
            await _insert(conn, "identity_memberships", _ROWS.membership_row(membership))

    async def set_membership_roles(
        self, tenant_id: str, user_id: str, roles: tuple[str, ...], event: AuditEvent
    ) -> None:
        async with self._write(event) as conn:
            cur = await conn.execute(
                "UPDATE identity_memberships SET roles = ? WHERE tenant_id = ? AND user_id = ?",
                (_ROWS.dump_list(roles), tenant_id, user_id),
            )
            if cur.rowcount != 1:
                raise NotFound("membership")

    async def create_invitation(
        self, invitation: Invitation, token_hash: str, event: AuditEvent
    ) -> None:
        async with self._write(event) as conn:
            row = _ROWS.invitation_row(invitation, token_hash, event.ts)
            await _insert(conn, "identity_invitations", row)

    async def get_invitation_by_token_hash(self, token_hash: str) -> Invitation | None:
        row = await self._fetchone(f"{_INVITATION} WHERE token_hash = ?", (token_hash,))
        return _ROWS.invitation(row) if row else None

    async def grant_operator(self, user_id: str, event: AuditEvent) -> None:
        async with self._write(event) as conn:
            await conn.execute(
                "INSERT INTO identity_operators (user_id, granted_at) VALUES (?, ?) "
                "ON CONFLICT (user_id) DO NOTHING",
                (user_id, event.ts),
            )

    async def is_operator(self, user_id: str) -> bool:
        row = await self._fetchone("SELECT 1 FROM identity_operators WHERE user_id = ?", (user_id,))
        return row is not None

    async def create_service_account(self, account: ServiceAccount, event: AuditEvent) -> None:
        async with self._write(event) as conn:
            await _insert(conn, "identity_service_accounts", _ROWS.account_row(account))

    async def get_service_account(self, tenant_id: str, account_id: str) -> ServiceAccount | None:
        row = await self._fetchone(
            f"{_ACCOUNT} WHERE tenant_id = ? AND id = ?", (tenant_id, account_id)
        )
        return _ROWS.account(row) if row else None

    async def list_service_accounts(self, tenant_id: str) -> list[ServiceAccount]:
        rows = await self._fetchall(
            f"{_ACCOUNT} WHERE tenant_id = ? ORDER BY created_at, rowid", (tenant_id,)
        )
        return [_ROWS.account(row) for row in rows]

    async def create_api_key(self, key: ApiKey, secret_hash: str, event: AuditEvent) -> None:
        async with self._write(event) as conn:
            await _insert(conn, "identity_api_keys", _ROWS.key_row(key, secret_hash))

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        row = await self._fetchone(f"{_KEY} WHERE id = ?", (key_id,))
        return _ROWS.key_record(row) if row else None

    async def revoke_api_key(
        self, tenant_id: str, key_id: str, revoked_at: float, event: AuditEvent
    ) -> ApiKey:
        async with self._write(event) as conn:
            # SECURITY: cross-tenant revocation; the tenant is part of the WHERE clause.
            await conn.execute(
                "UPDATE identity_api_keys SET revoked_at = COALESCE(revoked_at, ?) "
                "WHERE tenant_id = ? AND id = ?",
                (revoked_at, tenant_id, key_id),
            )
            async with conn.execute(
                f"{_KEY} WHERE tenant_id = ? AND id = ?", (tenant_id, key_id)
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                raise NotFound("api_key")
            return _ROWS.key(row)

    async def list_api_keys(self, tenant_id: str, account_id: str) -> list[ApiKey]:
        rows = await self._fetchall(
            f"{_KEY} WHERE tenant_id = ? AND service_account_id = ? ORDER BY created_at, rowid",
            (tenant_id, account_id),
        )
        return [_ROWS.key(row) for row in rows]

    async def append_audit(self, event: AuditEvent) -> None:
        async with self._write(event):
            pass


async def _insert(conn: aiosqlite.Connection, table: str, row: dict[str, object]) -> None:
    """Inserts one row; `table` and the column names are constants of this module."""
    await conn.execute(_ROWS.insert_sql(table, row), tuple(row.values()))
