"""The PostgreSQL `IdentityStore`: the `identity` schema (migration 0003).

Every write runs in one `PostgresDatabase.transaction()` that first appends the audit event
and then makes the change, so a failing change (a conflict, a missing row) rolls its event
back. Uniqueness is the database's job: a unique violation becomes `Conflict(field)` by
constraint name, a foreign-key violation `NotFound("reference")`, and an outage (raised by
the database layer) `StoreUnavailable`. Behaviour and values match `SqliteIdentityStore`:
rows and records map through `identity_rows.POSTGRES`, the mapping shared with SQLite.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

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
from gateway.storage.postgres.audit import append_event
from gateway.storage.postgres.database import Connection, PostgresDatabase, Record, rowcount
from gateway.storage.postgres.identity_account import PostgresAccountRecords

__all__ = ["PostgresIdentityStore"]

_UNIQUE_FIELDS = {
    "users_email_key": "email",
    "tenants_slug_key": "tenant",
    "memberships_pkey": "membership",
    "service_accounts_tenant_id_name_key": "service_account",
    "invitations_token_hash_key": "invitation",
}

_ROWS = identity_rows.POSTGRES  # lists as text[], flags as boolean

_TENANT = "SELECT id, slug, created_at, features, plan, upstream, require_mfa FROM identity.tenants"
_USER = "SELECT id, email, created_at, email_verified, password_hash FROM identity.users"
_MEMBERSHIP = "SELECT tenant_id, user_id, roles, created_at FROM identity.memberships"
_INVITATION = "SELECT id, tenant_id, email, role, expires_at, accepted_at FROM identity.invitations"
_ACCOUNT = "SELECT id, tenant_id, name, roles, created_at FROM identity.service_accounts"
_KEY_COLUMNS = "id, tenant_id, service_account_id, created_at, expires_at, revoked_at"
_KEY = f"SELECT {_KEY_COLUMNS}, secret_hash FROM identity.api_keys"  # noqa: S608 - constants
_REVOKE_KEY = (
    "UPDATE identity.api_keys SET revoked_at = COALESCE(revoked_at, $1) "  # noqa: S608
    f"WHERE tenant_id = $2 AND id = $3 RETURNING {_KEY_COLUMNS}"
)


def _mapped(exc: asyncpg.PostgresError) -> Exception:
    """The port error for a constraint violation; `StoreUnavailable` for anything else."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        name = str(exc.constraint_name or "")
        return Conflict(_UNIQUE_FIELDS.get(name, "id" if name.endswith("_pkey") else name))
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return NotFound("reference")
    # Fail closed: the caller answers 503 rather than guessing.
    return StoreUnavailable(f"identity store: {type(exc).__name__}: {exc}")


class PostgresIdentityStore(PostgresAccountRecords):
    """`IdentityStore` over `PostgresDatabase`; see the port for the guarantees (the MFA and
    e-mail token methods are in `identity_account`)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    @contextlib.asynccontextmanager
    async def _write(self, event: AuditEvent) -> AsyncIterator[Connection]:
        """A transaction that already holds `event`; constraint errors are mapped."""
        try:
            async with self._db.transaction() as conn:
                # The event goes first: if the change below fails, the rollback takes it too.
                await append_event(conn, event)
                yield conn
        except asyncpg.PostgresError as exc:
            raise _mapped(exc) from exc

    async def _fetchrow(self, sql: str, *args: object) -> Record | None:
        try:
            return await self._db.fetchrow(sql, *args)
        except asyncpg.PostgresError as exc:
            raise _mapped(exc) from exc

    async def _fetch(self, sql: str, *args: object) -> list[Record]:
        try:
            return await self._db.fetch(sql, *args)
        except asyncpg.PostgresError as exc:
            raise _mapped(exc) from exc

    async def signup(
        self,
        tenant: Tenant,
        user: User,
        password_hash: str,
        membership: Membership,
        event: AuditEvent,
    ) -> None:
        async with self._write(event) as conn:
            await _insert(conn, "identity.tenants", _ROWS.tenant_row(tenant))
            await _insert(conn, "identity.users", _ROWS.user_row(user, password_hash))
            await _insert(conn, "identity.memberships", _ROWS.membership_row(membership))

    async def create_tenant(self, tenant: Tenant, event: AuditEvent) -> None:
        async with self._write(event) as conn:
            await _insert(conn, "identity.tenants", _ROWS.tenant_row(tenant))

    async def update_tenant_settings(self, tenant: Tenant, event: AuditEvent) -> None:
        row = _ROWS.tenant_row(tenant)
        async with self._write(event) as conn:
            status = await conn.execute(
                "UPDATE identity.tenants SET features = $1, plan = $2, upstream = $3, "
                "require_mfa = $4 WHERE id = $5",
                row["features"], row["plan"], row["upstream"], row["require_mfa"], tenant.id,
            )  # fmt: skip
            if rowcount(status) != 1:
                raise NotFound("tenant")

    async def create_user(
        self, user: User, password_hash: str, membership: Membership, event: AuditEvent
    ) -> None:
        async with self._write(event) as conn:
            await _insert(conn, "identity.users", _ROWS.user_row(user, password_hash))
            await _insert(conn, "identity.memberships", _ROWS.membership_row(membership))

    async def accept_invitation(
        self,
        invitation_id: str,
        user: User,
        password_hash: str,
        membership: Membership,
        event: AuditEvent,
    ) -> None:
        async with self._write(event) as conn:
            # SECURITY: replay of an invitation; a compare-and-set on the row (the row lock
            # makes a racing acceptance wait and then see accepted_at set), so exactly one wins.
            status = await conn.execute(
                "UPDATE identity.invitations SET accepted_at = $1, accepted_by = $2 "
                "WHERE id = $3 AND tenant_id = $4 AND accepted_at IS NULL AND expires_at > $1",
                user.created_at, user.id, invitation_id, membership.tenant_id,
            )  # fmt: skip
            if rowcount(status) != 1:
                raise Conflict("invitation")
            await _insert(conn, "identity.users", _ROWS.user_row(user, password_hash))
            await _insert(conn, "identity.memberships", _ROWS.membership_row(membership))

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        row = await self._fetchrow(f"{_TENANT} WHERE id = $1", tenant_id)
        return _ROWS.tenant(row) if row else None

    async def get_tenant_by_slug(self, slug: str) -> Tenant | None:
        row = await self._fetchrow(f"{_TENANT} WHERE slug = $1", slug)
        return _ROWS.tenant(row) if row else None

    async def get_user(self, user_id: str) -> User | None:
        row = await self._fetchrow(f"{_USER} WHERE id = $1", user_id)
        return _ROWS.user(row) if row else None

    async def get_user_by_email(self, email: str) -> UserCredentials | None:
        # Case-insensitive, like the unique index (and SQLite's COLLATE NOCASE).
        row = await self._fetchrow(f"{_USER} WHERE lower(email) = lower($1)", email)
        return _ROWS.user_credentials(row) if row else None

    async def update_password_hash(
        self, user_id: str, password_hash: str, event: AuditEvent
    ) -> None:
        async with self._write(event) as conn:
            status = await conn.execute(
                "UPDATE identity.users SET password_hash = $1 WHERE id = $2",
                password_hash,
                user_id,
            )
            if rowcount(status) != 1:
                raise NotFound("user")

    async def list_memberships(self, user_id: str) -> list[Membership]:
        rows = await self._fetch(
            f"{_MEMBERSHIP} WHERE user_id = $1 ORDER BY created_at, seq", user_id
        )
        return [_ROWS.membership(row) for row in rows]

    async def get_membership(self, tenant_id: str, user_id: str) -> Membership | None:
        sql = f"{_MEMBERSHIP} WHERE tenant_id = $1 AND user_id = $2"
        row = await self._fetchrow(sql, tenant_id, user_id)
        return _ROWS.membership(row) if row else None

    async def add_membership(self, membership: Membership, event: AuditEvent) -> None:
        async with self._write(event) as conn:
            await _insert(conn, "identity.memberships", _ROWS.membership_row(membership))

    async def set_membership_roles(
        self, tenant_id: str, user_id: str, roles: tuple[str, ...], event: AuditEvent
    ) -> None:
        async with self._write(event) as conn:
            status = await conn.execute(
                "UPDATE identity.memberships SET roles = $1 WHERE tenant_id = $2 AND user_id = $3",
                _ROWS.dump_list(roles), tenant_id, user_id,
            )  # fmt: skip
            if rowcount(status) != 1:
                raise NotFound("membership")

    async def create_invitation(
        self, invitation: Invitation, token_hash: str, event: AuditEvent
    ) -> None:
        async with self._write(event) as conn:
            row = _ROWS.invitation_row(invitation, token_hash, event.ts)
            await _insert(conn, "identity.invitations", row)

    async def get_invitation_by_token_hash(self, token_hash: str) -> Invitation | None:
        row = await self._fetchrow(f"{_INVITATION} WHERE token_hash = $1", token_hash)
        return _ROWS.invitation(row) if row else None

    async def grant_operator(self, user_id: str, event: AuditEvent) -> None:
        async with self._write(event) as conn:
            await conn.execute(
                "INSERT INTO identity.operators (user_id, granted_at) VALUES ($1, $2) "
                "ON CONFLICT (user_id) DO NOTHING",
                user_id,
                event.ts,
            )

    async def is_operator(self, user_id: str) -> bool:
        sql = "SELECT 1 FROM identity.operators WHERE user_id = $1"
        return await self._fetchrow(sql, user_id) is not None

    async def create_service_account(self, account: ServiceAccount, event: AuditEvent) -> None:
        async with self._write(event) as conn:
            await _insert(conn, "identity.service_accounts", _ROWS.account_row(account))

    async def get_service_account(self, tenant_id: str, account_id: str) -> ServiceAccount | None:
        sql = f"{_ACCOUNT} WHERE tenant_id = $1 AND id = $2"
        row = await self._fetchrow(sql, tenant_id, account_id)
        return _ROWS.account(row) if row else None

    async def list_service_accounts(self, tenant_id: str) -> list[ServiceAccount]:
        sql = f"{_ACCOUNT} WHERE tenant_id = $1 ORDER BY created_at, seq"
        return [_ROWS.account(row) for row in await self._fetch(sql, tenant_id)]

    async def create_api_key(self, key: ApiKey, secret_hash: str, event: AuditEvent) -> None:
        async with self._write(event) as conn:
            await _insert(conn, "identity.api_keys", _ROWS.key_row(key, secret_hash))

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        row = await self._fetchrow(f"{_KEY} WHERE id = $1", key_id)
        return _ROWS.key_record(row) if row else None

    async def revoke_api_key(
        self, tenant_id: str, key_id: str, revoked_at: float, event: AuditEvent
    ) -> ApiKey:
        async with self._write(event) as conn:
            # SECURITY: cross-tenant revocation; the tenant is part of the WHERE clause.
            row = await conn.fetchrow(_REVOKE_KEY, revoked_at, tenant_id, key_id)
            if row is None:
                raise NotFound("api_key")
            return _ROWS.key(row)

    async def list_api_keys(self, tenant_id: str, account_id: str) -> list[ApiKey]:
        sql = f"{_KEY} WHERE tenant_id = $1 AND service_account_id = $2 ORDER BY created_at, seq"
        return [_ROWS.key(row) for row in await self._fetch(sql, tenant_id, account_id)]

    async def append_audit(self, event: AuditEvent) -> None:
        async with self._write(event):
            pass


async def _insert(conn: Connection, table: str, row: dict[str, object]) -> None:
    """Inserts one row; `table` and the column names are constants of this module."""
    await conn.execute(_ROWS.insert_sql(table, row), *row.values())
