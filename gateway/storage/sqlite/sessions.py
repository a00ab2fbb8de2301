"""The SQLite `SessionStore`: session rows in the embedded database.

Guarantees: every change runs in one write-locked transaction, so a revocation and its audit
event commit together or not at all; reads use the reader connection and see only committed
rows (including rows committed by other processes on the same file); backend failures
surface as `StoreUnavailable`, uniqueness violations as `StoreConflict`.
"""

from __future__ import annotations

import builtins
import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import aiosqlite

from gateway.audit.events import AuditEvent
from gateway.sessions.models import SessionRecord, with_session_ids
from gateway.storage.ports import StoreConflict, StoreUnavailable
from gateway.storage.sqlite.audit import append_event
from gateway.storage.sqlite.database import SqliteDatabase

COLUMNS = (
    "id, token_hash, user_id, tenant_id, created_at, last_seen_at, expires_at, idle_timeout, "
    "auth_method, mfa, mfa_pending, ip, user_agent, revoked_at, rotate_pending, mfa_at"
)
SELECT = f"SELECT {COLUMNS} FROM sessions"  # noqa: S608 - constant column list
INSERT = f"INSERT INTO sessions ({COLUMNS}) VALUES ({', '.join('?' * 16)})"  # noqa: S608
ACTIVE = "revoked_at IS NULL"


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Maps SQLite's exceptions onto the port's."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise StoreConflict("session already exists") from exc
    except (sqlite3.Error, OSError, ValueError) as exc:  # ValueError: connection closed
        raise StoreUnavailable(f"session store: {exc}") from exc


def _to_record(row: aiosqlite.Row) -> SessionRecord:
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
        mfa=bool(row["mfa"]),
        mfa_pending=bool(row["mfa_pending"]),
        ip=row["ip"],
        user_agent=row["user_agent"],
        revoked_at=row["revoked_at"],
        rotate_pending=bool(row["rotate_pending"]),
        mfa_at=row["mfa_at"],
    )


def _params(r: SessionRecord) -> tuple[Any, ...]:
    return (
        r.id, r.token_hash, r.user_id, r.tenant_id, r.created_at, r.last_seen_at,
        r.expires_at, r.idle_timeout, r.auth_method, int(r.mfa), int(r.mfa_pending), r.ip,
        r.user_agent, r.revoked_at, int(r.rotate_pending), r.mfa_at,
    )  # fmt: skip


async def _revoke_where(
    conn: aiosqlite.Connection, where: str, params: tuple[Any, ...], ts: float
) -> builtins.list[str]:
    """Revokes the active rows matching `where` (a constant SQL fragment); their ids."""
    sql = f"UPDATE sessions SET revoked_at = ? WHERE {ACTIVE} AND {where} RETURNING id"  # noqa: S608
    async with conn.execute(sql, (ts, *params)) as cur:
        return sorted(str(row[0]) for row in await cur.fetchall())


class SqliteSessionStore:
    """`SessionStore` over `SqliteDatabase`'s `sessions` table (migration 0004)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def create(self, record: SessionRecord, audit: AuditEvent | None = None) -> None:
        with _translated():
            async with self._db.transaction() as conn:
                await conn.execute(INSERT, _params(record))
                if audit is not None:
                    await append_event(conn, audit)

    async def mark_for_rotation(self, user_id: str, tenant_id: str | None = None) -> list[str]:
        """Flags the user's active sessions (in one tenant, or all) for rotation; their ids."""
        where = "user_id = ?" + (" AND tenant_id = ?" if tenant_id else "")
        params = (user_id, tenant_id) if tenant_id else (user_id,)
        sql = f"UPDATE sessions SET rotate_pending = 1 WHERE {ACTIVE} AND {where} RETURNING id"  # noqa: S608
        with _translated():
            async with self._db.transaction() as conn, conn.execute(sql, params) as cur:
                return sorted(str(row[0]) for row in await cur.fetchall())

    async def get(self, session_id: str) -> SessionRecord | None:
        return await self._one(f"{SELECT} WHERE id = ?", (session_id,))

    async def get_by_token_hash(self, token_hash: str) -> SessionRecord | None:
        return await self._one(f"{SELECT} WHERE token_hash = ?", (token_hash,))

    async def touch(self, session_id: str, last_seen_at: float) -> None:
        with _translated():
            async with self._db.transaction() as conn:
                await conn.execute(
                    "UPDATE sessions SET last_seen_at = MAX(last_seen_at, ?) "
                    "WHERE id = ? AND revoked_at IS NULL",
                    (last_seen_at, session_id),
                )

    async def revoke(self, session_id: str, ts: float, audit: AuditEvent) -> bool:
        with _translated():
            async with self._db.transaction() as conn:
                ids = await _revoke_where(conn, "id = ?", (session_id,), ts)
                if ids:
                    await append_event(conn, with_session_ids(audit, ids))
        return bool(ids)

    async def revoke_all_for_user(
        self, user_id: str, ts: float, audit: AuditEvent, except_id: str | None = None
    ) -> builtins.list[str]:
        with _translated():
            async with self._db.transaction() as conn:
                where, params = "user_id = ? AND id IS NOT ?", (user_id, except_id)
                ids = await _revoke_where(conn, where, params, ts)
                await append_event(conn, with_session_ids(audit, ids))
        return ids

    async def revoke_all_for_tenant(
        self, tenant_id: str, ts: float, audit: AuditEvent
    ) -> builtins.list[str]:
        with _translated():
            async with self._db.transaction() as conn:
                ids = await _revoke_where(conn, "tenant_id = ?", (tenant_id,), ts)
                await append_event(conn, with_session_ids(audit, ids))
        return ids

    async def rotate(self, old_id: str, new_record: SessionRecord, audit: AuditEvent) -> bool:
        with _translated():
            async with self._db.transaction() as conn:
                ts = new_record.created_at
                if not await _revoke_where(conn, "id = ?", (old_id,), ts):
                    return False
                await conn.execute(INSERT, _params(new_record))
                await append_event(conn, with_session_ids(audit, [old_id]))
        return True

    async def delete_expired(self, now: float) -> int:
        with _translated():
            async with self._db.transaction() as conn:
                cur = await conn.execute(
                    "DELETE FROM sessions WHERE revoked_at IS NOT NULL OR expires_at <= ? "
                    "OR last_seen_at + idle_timeout <= ?",
                    (now, now),
                )
                return int(cur.rowcount)

    async def list(
        self, tenant_id: str | None, user_id: str | None, *, now: float
    ) -> builtins.list[SessionRecord]:
        clauses = [ACTIVE, "expires_at > ?", "last_seen_at + idle_timeout > ?"]
        params: builtins.list[Any] = [now, now]
        if tenant_id is not None:
            # SECURITY: the tenant filter is in the query, so no other tenant's row is read.
            clauses.append("tenant_id = ?")
            params.append(tenant_id)
        if user_id is not None:
            clauses.append("user_id = ?")
            params.append(user_id)
        sql = f"{SELECT} WHERE {' AND '.join(clauses)} ORDER BY created_at, id"
        with _translated():
            rows = await self._db.fetchall(sql, tuple(params))
        return [_to_record(row) for row in rows]

    async def _one(self, sql: str, params: tuple[Any, ...]) -> SessionRecord | None:
        with _translated():
            row = await self._db.fetchone(sql, params)
        return None if row is None else _to_record(row)
