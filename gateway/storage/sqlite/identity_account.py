"""SQLite storage of issue 13's identity records: TOTP enrolments, recovery codes and e-mailed
one-time tokens (migration 0009). Mixed into `SqliteIdentityStore`; see the port.

Single use is a compare-and-set inside the write transaction: of two racing redeemers exactly
one updates the row, and the loser's transaction (its audit event included) is rolled back.
Rows map to records through `identity_rows.SQLITE`, the mapping shared with PostgreSQL.
"""

from __future__ import annotations

import contextlib

import aiosqlite

from gateway.audit.events import AuditEvent
from gateway.identity.errors import Conflict
from gateway.identity.records import RESET, VERIFY, EmailToken, MfaRecord, TokenPurpose
from gateway.storage import identity_rows
from gateway.storage.sqlite.database import SqliteDatabase

_ROWS = identity_rows.SQLITE

_MFA = "SELECT user_id, secret_ciphertext, created_at, enabled_at, last_step FROM identity_mfa"
_EMAIL_SELECT = (
    "SELECT user_id, purpose, email, created_at, expires_at, used_at FROM identity_email_tokens"
)


class _Lost(Exception):
    """A compare-and-set lost: roll the transaction (and its event) back."""


class SqliteAccountRecords:
    """The MFA and e-mail token methods of `SqliteIdentityStore`."""

    _db: SqliteDatabase

    def _write(
        self, event: AuditEvent
    ) -> contextlib.AbstractAsyncContextManager[aiosqlite.Connection]:
        raise NotImplementedError

    async def _fetchone(self, sql: str, params: tuple[object, ...]) -> aiosqlite.Row | None:
        raise NotImplementedError

    async def _compare_and_set(
        self, event: AuditEvent, sql: str, params: tuple[object, ...]
    ) -> bool:
        """Runs one UPDATE under `event`; False (and nothing written) unless it hit a row."""
        try:
            async with self._write(event) as conn:
                cur = await conn.execute(sql, params)
                if cur.rowcount != 1:
                    raise _Lost
        except _Lost:
            return False
        return True

    async def get_mfa(self, user_id: str) -> MfaRecord | None:
        row = await self._fetchone(f"{_MFA} WHERE user_id = ?", (user_id,))
        return _ROWS.mfa(row) if row else None

    async def put_mfa_enrollment(
        self, record: MfaRecord, recovery_hashes: tuple[str, ...], event: AuditEvent
    ) -> None:
        async with self._write(event) as conn:
            async with conn.execute(
                "SELECT enabled_at FROM identity_mfa WHERE user_id = ?", (record.user_id,)
            ) as cur:
                existing = await cur.fetchone()
            if existing is not None and existing[0] is not None:
                raise Conflict("mfa")
            await conn.execute("DELETE FROM identity_mfa WHERE user_id = ?", (record.user_id,))
            await conn.execute(
                "DELETE FROM identity_recovery_codes WHERE user_id = ?", (record.user_id,)
            )
            await conn.execute(
                "INSERT INTO identity_mfa (user_id, secret_ciphertext, created_at, enabled_at, "
                "last_step) VALUES (?, ?, ?, NULL, ?)",
                (record.user_id, record.secret_ciphertext, record.created_at, record.last_step),
            )
            await conn.executemany(
                "INSERT INTO identity_recovery_codes (user_id, code_hash) VALUES (?, ?)",
                [(record.user_id, code_hash) for code_hash in recovery_hashes],
            )

    async def enable_mfa(
        self, user_id: str, enabled_at: float, step: int, event: AuditEvent
    ) -> bool:
        return await self._compare_and_set(
            event,
            "UPDATE identity_mfa SET enabled_at = ?, last_step = ? "
            "WHERE user_id = ? AND enabled_at IS NULL AND last_step < ?",
            (enabled_at, step, user_id, step),
        )

    async def use_totp_step(self, user_id: str, step: int, event: AuditEvent) -> bool:
        # SECURITY: replay; the step only moves forward, so each code is accepted once.
        return await self._compare_and_set(
            event,
            "UPDATE identity_mfa SET last_step = ? "
            "WHERE user_id = ? AND enabled_at IS NOT NULL AND last_step < ?",
            (step, user_id, step),
        )

    async def use_recovery_code(
        self, user_id: str, code_hash: str, used_at: float, event: AuditEvent
    ) -> bool:
        return await self._compare_and_set(
            event,
            "UPDATE identity_recovery_codes SET used_at = ? "
            "WHERE user_id = ? AND code_hash = ? AND used_at IS NULL AND EXISTS "
            "(SELECT 1 FROM identity_mfa m WHERE m.user_id = ? AND m.enabled_at IS NOT NULL)",
            (used_at, user_id, code_hash, user_id),
        )

    async def count_recovery_codes(self, user_id: str) -> int:
        row = await self._fetchone(
            "SELECT count(*) FROM identity_recovery_codes WHERE user_id = ? AND used_at IS NULL",
            (user_id,),
        )
        return int(row[0]) if row else 0

    async def delete_mfa(self, user_id: str, event: AuditEvent) -> bool:
        try:
            async with self._write(event) as conn:
                cur = await conn.execute("DELETE FROM identity_mfa WHERE user_id = ?", (user_id,))
                if cur.rowcount != 1:
                    raise _Lost
                await conn.execute(
                    "DELETE FROM identity_recovery_codes WHERE user_id = ?", (user_id,)
                )
        except _Lost:
            return False
        return True

    async def create_email_token(
        self, token: EmailToken, token_hash: str, event: AuditEvent
    ) -> None:
        async with self._write(event) as conn:
            await conn.execute(
                "INSERT INTO identity_email_tokens (token_hash, user_id, purpose, email, "
                "created_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_hash, token.user_id, token.purpose, token.email, token.created_at,
                 token.expires_at, token.used_at),
            )  # fmt: skip

    async def get_email_token(self, token_hash: str) -> EmailToken | None:
        row = await self._fetchone(f"{_EMAIL_SELECT} WHERE token_hash = ?", (token_hash,))
        return _ROWS.email_token(row) if row else None

    async def redeem_email_token(
        self,
        token_hash: str,
        purpose: TokenPurpose,
        now: float,
        event: AuditEvent,
        password_hash: str | None = None,
    ) -> EmailToken | None:
        try:
            async with self._write(event) as conn:
                # SECURITY: single use; only one redeemer flips used_at from NULL.
                cur = await conn.execute(
                    "UPDATE identity_email_tokens SET used_at = ? WHERE token_hash = ? "
                    "AND purpose = ? AND used_at IS NULL AND expires_at > ?",
                    (now, token_hash, purpose, now),
                )
                if cur.rowcount != 1:
                    raise _Lost
                async with conn.execute(
                    f"{_EMAIL_SELECT} WHERE token_hash = ?", (token_hash,)
                ) as c:
                    row = await c.fetchone()
                assert row is not None
                token = _ROWS.email_token(row)
                await _apply(conn, token, now, password_hash)
                return token
        except _Lost:
            return None


async def _apply(
    conn: aiosqlite.Connection, token: EmailToken, now: float, password_hash: str | None
) -> None:
    """The effect of a redeemed token, inside its transaction."""
    if token.purpose == VERIFY:
        await conn.execute(
            "UPDATE identity_users SET email_verified = 1 WHERE id = ? AND email = ?",
            (token.user_id, token.email),
        )
    elif token.purpose == RESET:
        if password_hash is None:
            raise _Lost
        cur = await conn.execute(
            "UPDATE identity_users SET password_hash = ? WHERE id = ?",
            (password_hash, token.user_id),
        )
        if cur.rowcount != 1:
            raise _Lost
        await conn.execute(
            "UPDATE identity_email_tokens SET used_at = ? "
            "WHERE user_id = ? AND purpose = ? AND used_at IS NULL",
            (now, token.user_id, RESET),
        )
