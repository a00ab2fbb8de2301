"""The PostgreSQL database: one asyncpg pool shared by every adapter of a process.

Guarantees:

* `transaction()` yields one connection inside one transaction: everything in the block
  commits together or nothing does;
* an unreachable, restarting, shutting-down or read-only server raises `StoreUnavailable`
  (callers fail closed); the connections that saw it are dropped from the pool, so the next
  call reconnects by itself (after a restart, or to a new primary after a failover) without
  the store being recreated;
* every other error (constraint violations included) reaches the adapter unchanged, for it to
  map onto its port's errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import asyncpg

from gateway.storage.ports import StoreUnavailable

Connection: TypeAlias = Any  # asyncpg.Connection (asyncpg ships no type information)
Record: TypeAlias = Any  # asyncpg.Record

# SQLSTATEs after which the server, or this connection to it, cannot be trusted to serve
# writes: connection exceptions (class 08), admin/crash shutdown and "cannot connect now"
# (57P01..57P03), and a read-only transaction (25006: we are talking to a demoted primary).
_RECONNECT_STATES = ("57P01", "57P02", "57P03", "25006")
_INTERNAL_ERROR = asyncpg.exceptions._base.InternalClientError
# Also unavailable, but the connection itself is fine: out of resources (class 53).
_UNAVAILABLE_CLASSES = ("08", "53")


def must_reconnect(exc: BaseException) -> bool:
    """Whether `exc` means this connection (or the server behind it) is gone or read-only."""
    # InternalClientError: asyncpg's protocol state broke (e.g. the server killed the
    # connection mid-operation); the connection is unusable.
    lost = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError, _INTERNAL_ERROR)
    if isinstance(exc, lost):
        return True
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and (state.startswith("08") or state in _RECONNECT_STATES)


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` is a backend outage rather than a problem with the statement."""
    if must_reconnect(exc) or isinstance(exc, TimeoutError):
        return True
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and state.startswith(_UNAVAILABLE_CLASSES)


class PostgresDatabase:
    """An asyncpg pool with transaction and read helpers that fail closed."""

    def __init__(self, pool: Any, *, acquire_timeout: float = 10.0) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 30.0,
        acquire_timeout: float = 10.0,
    ) -> PostgresDatabase:
        """Opens the pool (connecting `min_size` connections); `StoreUnavailable` if the
        server cannot be reached. Does not migrate: see `migrate.migrate`."""
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=connect_timeout,
                command_timeout=command_timeout,
                server_settings={"application_name": "gateway"},
            )
        except Exception as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(f"database: {type(exc).__name__}: {exc}") from exc
            raise
        return cls(pool, acquire_timeout=acquire_timeout)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection (autocommit); outages become `StoreUnavailable`."""
        try:
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                try:
                    yield conn
                except Exception as exc:
                    if must_reconnect(exc):
                        # Drop every pooled connection before this one is released: after a
                        # failover they all point at a server that can no longer write.
                        await self._pool.expire_connections()
                        conn.terminate()
                    raise
        except Exception as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(f"database: {type(exc).__name__}: {exc}") from exc
            raise

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A connection inside a READ COMMITTED transaction: all of the block or nothing."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def fetchrow(self, sql: str, *args: object) -> Record | None:
        """One row (or None) of a read outside any transaction."""
        async with self.connection() as conn:
            return await conn.fetchrow(sql, *args)

    async def fetch(self, sql: str, *args: object) -> list[Record]:
        """All rows of a read outside any transaction."""
        async with self.connection() as conn:
            return list(await conn.fetch(sql, *args))

    async def fetchval(self, sql: str, *args: object) -> Any:
        """The first column of the first row (or None)."""
        async with self.connection() as conn:
            return await conn.fetchval(sql, *args)

    async def close(self) -> None:
        """Closes the pool (waiting for connections in use); calling it twice is harmless."""
        await self._pool.close()


def rowcount(status: str) -> int:
    """The number of rows of a command status such as `UPDATE 3` or `DELETE 0`."""
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else 0
