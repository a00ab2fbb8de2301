"""The PostgreSQL `SessionStore`: the `gateway.sessions` table (migration 0004).

Guarantees: every change runs in one transaction, so a revocation and its audit event commit
together or not at all; a conditional UPDATE takes the row lock, so of two racing revocations
or rotations of one session exactly one sees it active; reads see only committed rows, written
by any replica. Outages surface as `StoreUnavailable`, uniqueness violations as
`StoreConflict`. Values are identical to `SqliteSessionStore`'s.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from gateway.audit.events import AuditEvent
from gateway.sessions.models import SessionRecord, with_session_ids
from gateway.storage.ports import StoreConflict, StoreUnavailable
from gateway.storage.postgres.audit import append_event
from gateway.storage.postgres.database import Connection, PostgresDatabase, Record, rowcount

__all__ = ["PostgresSessionStore"]

COLUMNS = (
    "id, token_hash, user_id, tenant_id, created_at, last_seen_at, expires_at, idle_timeout, "
    "auth_method, mfa, mfa_pending, ip, user_agent, revoked_at, rotate_pending, mfa_at"
)
SELECT = f"SELECT {COLUMNS} FROM gateway.sessions"  # noqa: S608 - constant column list
_MARKS = ", ".join(f"${i}" for i in range(1, 17))
INSERT = f"INSERT INTO gateway.sessions ({COLUMNS}) VALUES ({_MARKS})"  # noqa: S608
ACTIVE = "revoked_at IS NULL"
_MARK = f"UPDATE gateway.sessions SET rotate_pending = true WHERE {ACTIVE}"  # noqa: S608


@contextlib.asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    """Maps asyncpg's exceptions onto the port's (outages arrive already mapped)."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise StoreConflict("session already exists") from exc
    except asyncpg.PostgresError as exc:
        raise StoreUnavailable(f"session store: {type(exc).__name__}: {exc}") from exc


def _to_record(row: Record) -> SessionRecord:
    return SessionRecord(
        id=row["id"],
        token_hash=row["token_hash"],
        user_id=row["user_id"],
        tenant_id=row["tenant_id"],
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
        expires_at=row["expires_at"],
        idle_timeout=row["idle_timeout"],
        auth_method=row["auth_method"],
        mfa=row["mfa"],
        mfa_pending=row["mfa_pending"],
        ip=row["ip"],
        user_agent=row["user_agent"],
        revoked_at=row["revoked_at"],
        rotate_pending=row["rotate_pending"],
        mfa_at=row["mfa_at"],
    )


def _params(r: SessionRecord) -> tuple[Any, ...]:
    return (
        r.id, r.token_hash, r.user_id, r.tenant_id, r.created_at, r.last_seen_at,
        r.expires_at, r.idle_timeout, r.auth_method, r.mfa, r.mfa_pending, r.ip,
        r.user_agent, r.revoked_at, r.rotate_pending, r.mfa_at,
    )  # fmt: skip


async def _revoke_where(
    conn: Connection, where: str, params: tuple[Any, ...], ts: float
) -> builtins.list[str]:
    """Revokes the active rows matching `where` (a constant SQL fragment whose parameters
    start at $2); their ids, sorted."""
    sql = f"UPDATE gateway.sessions SET revoked_at = $1 WHERE {ACTIVE} AND {where} RETURNING id"  # noqa: S608
    return sorted(str(row[0]) for row in await conn.fetch(sql, ts, *params))


class PostgresSessionStore:
    """`SessionStore` over `PostgresDatabase`; see the port for the guarantees."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def create(self, record: SessionRecord, audit: AuditEvent | None = None) -> None:
        async with _translated(), self._db.transaction() as conn:
            await conn.execute(INSERT, *_params(record))
            if audit is not None:
                await append_event(conn, audit)

    async def mark_for_rotation(self, user_id: str, tenant_id: str | None = None) -> list[str]:
        """Flags the user's active sessions (in one tenant, or all) for rotation; their ids."""
        where = "user_id = $1" + (" AND tenant_id = $2" if tenant_id else "")
        params = (user_id, tenant_id) if tenant_id else (user_id,)
        sql = f"{_MARK} AND {where} RETURNING id"
        async with _translated(), self._db.transaction() as conn:
            return sorted(str(row[0]) for row in await conn.fetch(sql, *params))

    async def get(self, session_id: str) -> SessionRecord | None:
        return await self._one(f"{SELECT} WHERE id = $1", session_id)

    async def get_by_token_hash(self, token_hash: str) -> SessionRecord | None:
        return await self._one(f"{SELECT} WHERE token_hash = $1", token_hash)

    async def touch(self, session_id: str, last_seen_at: float) -> None:
        async with _translated(), self._db.connection() as conn:
            await conn.execute(
                "UPDATE gateway.sessions SET last_seen_at = GREATEST(last_seen_at, $1) "
                "WHERE id = $2 AND revoked_at IS NULL",
                last_seen_at,
                session_id,
            )

    async def revoke(self, session_id: str, ts: float, audit: AuditEvent) -> bool:
        async with _translated(), self._db.transaction() as conn:
            ids = await _revoke_where(conn, "id = $2", (session_id,), ts)
            if ids:
                await append_event(conn, with_session_ids(audit, ids))
        return bool(ids)

    async def revoke_all_for_user(
        self, user_id: str, ts: float, audit: AuditEvent, except_id: str | None = None
    ) -> builtins.list[str]:
        where = "user_id = $2 AND id IS DISTINCT FROM $3::text"
        async with _translated(), self._db.transaction() as conn:
            ids = await _revoke_where(conn, where, (user_id, except_id), ts)
            await append_event(conn, with_session_ids(audit, ids))
        return ids

    async def revoke_all_for_tenant(
        self, tenant_id: str, ts: float, audit: AuditEvent
    ) -> builtins.list[str]:
        async with _translated(), self._db.transaction() as conn:
            ids = await _revoke_where(conn, "tenant_id = $2", (tenant_id,), ts)
            await append_event(conn, with_session_ids(audit, ids))
        return ids

    async def rotate(self, old_id: str, new_record: SessionRecord, audit: AuditEvent) -> bool:
        async with _translated(), self._db.transaction() as conn:
            ts = new_record.created_at
            # SECURITY: token replay; the row lock makes a concurrent rotation of the same
            # session wait and then find it revoked, so a session is rotated at most once.
            if not await _revoke_where(conn, "id = $2", (old_id,), ts):
                return False
            await conn.execute(INSERT, *_params(new_record))
            await append_event(conn, with_session_ids(audit, [old_id]))
        return True

    async def delete_expired(self, now: float) -> int:
        async with _translated(), self._db.connection() as conn:
            status = await conn.execute(
                "DELETE FROM gateway.sessions WHERE revoked_at IS NOT NULL OR expires_at <= $1 "
                "OR last_seen_at + idle_timeout <= $1",
                now,
            )
        return rowcount(status)

    async def list(
        self, tenant_id: str | None, user_id: str | None, *, now: float
    ) -> builtins.list[SessionRecord]:
        clauses = [ACTIVE, "expires_at > $1", "last_seen_at + idle_timeout > $1"]
        params: builtins.list[Any] = [now]
        if tenant_id is not None:
            # SECURITY: the tenant filter is in the query, so no other tenant's row is read.
            params.append(tenant_id)
            clauses.append(f"tenant_id = ${len(params)}")
        if user_id is not None:
            params.append(user_id)
            clauses.append(f"user_id = ${len(params)}")
        sql = f"{SELECT} WHERE {' AND '.join(clauses)} ORDER BY created_at, id"
        async with _translated():
            rows = await self._db.fetch(sql, *params)
        return [_to_record(row) for row in rows]

    async def _one(self, sql: str, *args: object) -> SessionRecord | None:
        async with _translated():
            row = await self._db.fetchrow(sql, *args)
        return None if row is None else _to_record(row)
