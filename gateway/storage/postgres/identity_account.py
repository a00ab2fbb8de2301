"""PostgreSQL storage of issue 13's identity records: TOTP enrolments, recovery codes and
e-mailed one-time tokens (migration 0007). Mixed into `PostgresIdentityStore`; see the port.

Single use is a compare-and-set UPDATE: under READ COMMITTED a racing writer waits for the row
lock and then re-checks the WHERE clause, so exactly one wins; the loser's transaction (its
audit event included) is rolled back. Behaviour matches the SQLite adapter; rows map to
records through `identity_rows.POSTGRES`, the mapping shared with it.
"""

from __future__ import annotations

import contextlib

from gateway.audit.events import AuditEvent
from gateway.identity.errors import Conflict
from gateway.identity.records import RESET, VERIFY, EmailToken, MfaRecord, TokenPurpose
from gateway.storage import identity_rows
from gateway.storage.postgres.database import Connection, Record, rowcount

_ROWS = identity_rows.POSTGRES

_MFA = "SELECT user_id, secret_ciphertext, created_at, enabled_at, last_step FROM identity.mfa"
_EMAIL_COLUMNS = "user_id, purpose, email, created_at, expires_at, used_at"
_EMAIL_SELECT = f"SELECT {_EMAIL_COLUMNS} FROM identity.email_tokens"  # noqa: S608 - constants
_ENROL = (
    "INSERT INTO identity.mfa (user_id, secret_ciphertext, created_at, enabled_at, last_step) "
    "VALUES ($1, $2, $3, NULL, $4) ON CONFLICT (user_id) DO UPDATE SET "
    "secret_ciphertext = EXCLUDED.secret_ciphertext, created_at = EXCLUDED.created_at, "
    "last_step = EXCLUDED.last_step WHERE identity.mfa.enabled_at IS NULL"
)
_REDEEM = (
    "UPDATE identity.email_tokens SET used_at = $1 WHERE token_hash = $2 AND purpose = $3 "  # noqa: S608
    f"AND used_at IS NULL AND expires_at > $1 RETURNING {_EMAIL_COLUMNS}"
)


class _Lost(Exception):
    """A compare-and-set lost: roll the transaction (and its event) back."""


class PostgresAccountRecords:
    """The MFA and e-mail token methods of `PostgresIdentityStore`."""

    def _write(self, event: AuditEvent) -> contextlib.AbstractAsyncContextManager[Connection]:
        raise NotImplementedError

    async def _fetchrow(self, sql: str, *args: object) -> Record | None:
        raise NotImplementedError

    async def _compare_and_set(self, event: AuditEvent, sql: str, *args: object) -> bool:
        """Runs one UPDATE/DELETE under `event`; False (nothing written) unless it hit a row."""
        try:
            async with self._write(event) as conn:
                if rowcount(await conn.execute(sql, *args)) != 1:
                    raise _Lost
        except _Lost:
            return False
        return True

    async def get_mfa(self, user_id: str) -> MfaRecord | None:
        row = await self._fetchrow(f"{_MFA} WHERE user_id = $1", user_id)
        return _ROWS.mfa(row) if row else None

    async def put_mfa_enrollment(
        self, record: MfaRecord, recovery_hashes: tuple[str, ...], event: AuditEvent
    ) -> None:
        async with self._write(event) as conn:
            status = await conn.execute(
                _ENROL, record.user_id, record.secret_ciphertext, record.created_at,
                record.last_step,
            )  # fmt: skip
            if rowcount(status) != 1:
                raise Conflict("mfa")
            await conn.execute(
                "DELETE FROM identity.recovery_codes WHERE user_id = $1", record.user_id
            )
            await conn.executemany(
                "INSERT INTO identity.recovery_codes (user_id, code_hash) VALUES ($1, $2)",
                [(record.user_id, code_hash) for code_hash in recovery_hashes],
            )

    async def enable_mfa(
        self, user_id: str, enabled_at: float, step: int, event: AuditEvent
    ) -> bool:
        return await self._compare_and_set(
            event,
            "UPDATE identity.mfa SET enabled_at = $1, last_step = $2 "
            "WHERE user_id = $3 AND enabled_at IS NULL AND last_step < $2",
            enabled_at, step, user_id,
        )  # fmt: skip

    async def use_totp_step(self, user_id: str, step: int, event: AuditEvent) -> bool:
        # SECURITY: replay; the step only moves forward, so each code is accepted once.
        return await self._compare_and_set(
            event,
            "UPDATE identity.mfa SET last_step = $1 "
            "WHERE user_id = $2 AND enabled_at IS NOT NULL AND last_step < $1",
            step, user_id,
        )  # fmt: skip

    async def use_recovery_code(
        self, user_id: str, code_hash: str, used_at: float, event: AuditEvent
    ) -> bool:
        return await self._compare_and_set(
            event,
            "UPDATE identity.recovery_codes SET used_at = $1 "
            "WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL AND EXISTS "
            "(SELECT 1 FROM identity.mfa m WHERE m.user_id = $2 AND m.enabled_at IS NOT NULL)",
            used_at, user_id, code_hash,
        )  # fmt: skip

    async def count_recovery_codes(self, user_id: str) -> int:
        row = await self._fetchrow(
            "SELECT count(*) FROM identity.recovery_codes WHERE user_id = $1 AND used_at IS NULL",
            user_id,
        )
        return int(row[0]) if row else 0

    async def delete_mfa(self, user_id: str, event: AuditEvent) -> bool:
        try:
            async with self._write(event) as conn:
                status = await conn.execute("DELETE FROM identity.mfa WHERE user_id = $1", user_id)
                if rowcount(status) != 1:
                    raise _Lost
                await conn.execute(
                    "DELETE FROM identity.recovery_codes WHERE user_id = $1", user_id
                )
        except _Lost:
            return False
        return True

    async def create_email_token(
        self, token: EmailToken, token_hash: str, event: AuditEvent
    ) -> None:
        async with self._write(event) as conn:
            await conn.execute(
                "INSERT INTO identity.email_tokens (token_hash, user_id, purpose, email, "
                "created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                token_hash, token.user_id, token.purpose, token.email, token.created_at,
                token.expires_at, token.used_at,
            )  # fmt: skip

    async def get_email_token(self, token_hash: str) -> EmailToken | None:
        row = await self._fetchrow(f"{_EMAIL_SELECT} WHERE token_hash = $1", token_hash)
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
                row = await conn.fetchrow(_REDEEM, now, token_hash, purpose)
                if row is None:
                    raise _Lost
                token = _ROWS.email_token(row)
                await _apply(conn, token, now, password_hash)
                return token
        except _Lost:
            return None


async def _apply(
    conn: Connection, token: EmailToken, now: float, password_hash: str | None
) -> None:
    """The effect of a redeemed token, inside its transaction."""
    if token.purpose == VERIFY:
        await conn.execute(
            "UPDATE identity.users SET email_verified = true WHERE id = $1 AND email = $2",
            token.user_id, token.email,
        )  # fmt: skip
    elif token.purpose == RESET:
        if password_hash is None:
            raise _Lost
        status = await conn.execute(
            "UPDATE identity.users SET password_hash = $1 WHERE id = $2",
            password_hash, token.user_id,
        )  # fmt: skip
        if rowcount(status) != 1:
            raise _Lost
        await conn.execute(
            "UPDATE identity.email_tokens SET used_at = $1 "
            "WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL",
            now, token.user_id, RESET,
        )  # fmt: skip
