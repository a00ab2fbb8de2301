"""The embedded default's SQLite database: one file in the state directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite

from gateway.storage.migrations import (
    Migration,
    SchemaStatus,
    load_migrations,
    verify_applied,
)

MIGRATIONS_PACKAGE = "gateway.storage.sqlite"

BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at REAL NOT NULL
)
"""


async def connect(path: Path) -> aiosqlite.Connection:
    """A connection in WAL mode with foreign keys on and a busy timeout for concurrent writers."""
    db = await aiosqlite.connect(path, isolation_level=None)
    db.row_factory = aiosqlite.Row
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA foreign_keys=ON")
    await db.execute("PRAGMA busy_timeout=10000")
    await db.execute("PRAGMA synchronous=NORMAL")
    return db


async def _applied(db: aiosqlite.Connection) -> dict[int, str]:
    await db.execute(BOOKKEEPING)
    async with db.execute("SELECT version, checksum FROM schema_migrations") as cur:
        return {int(row[0]): str(row[1]) for row in await cur.fetchall()}


async def schema_status(db: aiosqlite.Connection) -> SchemaStatus:
    """The applied and the shipped schema versions."""
    migrations = load_migrations(MIGRATIONS_PACKAGE)
    applied = await _applied(db)
    verify_applied(applied, migrations)
    return SchemaStatus(current=max(applied, default=0), latest=len(migrations))


async def _apply(db: aiosqlite.Connection, migration: Migration) -> bool:
    # BEGIN IMMEDIATE takes the write lock: concurrent migrators (workers) serialize here,
    # and the version is re-checked inside the lock so each migration applies exactly once.
    await db.execute("BEGIN IMMEDIATE")
    try:
        async with db.execute(
            "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
        ) as cur:
            if await cur.fetchone() is not None:
                await db.execute("ROLLBACK")
                return False
        await _run_statements(db, migration.sql)
        await db.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
            "VALUES (?, ?, ?, ?)",
            (migration.version, migration.name, migration.checksum, time.time()),
        )
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    return True


async def _run_statements(db: aiosqlite.Connection, sql: str) -> None:
    """Runs a migration's statements one by one inside the caller's transaction."""
    for statement in split_statements(sql):
        await db.execute(statement)


def split_statements(sql: str) -> list[str]:
    """Splits a migration on `;` at line ends; migrations keep one statement per block."""
    statements, current = [], []
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip())
            current = []
    tail = "\n".join(current).strip()
    if tail:
        statements.append(tail)
    return [s for s in statements if s]


async def migrate(db: aiosqlite.Connection) -> list[str]:
    """Applies every pending migration; returns the names applied (empty when up to date)."""
    migrations = load_migrations(MIGRATIONS_PACKAGE)
    verify_applied(await _applied(db), migrations)
    done = []
    for migration in migrations:
        if await _apply(db, migration):
            done.append(f"{migration.version:04d}_{migration.name}")
    return done


def create_private_file(path: Path) -> None:
    """Creates an empty file with mode 0600 unless it exists (SQLite keeps that mode)."""
    # SECURITY: the database holds password and key hashes: no other local user reads it.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class SqliteDatabase:
    """One writer connection behind a lock and one reader connection, over a WAL database.

    Writes go through `transaction()`, which serializes writers in this process (SQLite has
    one writer anyway) and makes the block atomic: everything in it commits or nothing does.
    Reads use a separate connection, so they never observe another coroutine's uncommitted
    transaction and never wait for the write lock.
    """

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self.writer = writer
        self.reader = reader
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SqliteDatabase:
        """Opens both connections (creating the file with mode 0600) and migrates."""
        create_private_file(path)
        writer = await connect(path)
        await migrate(writer)
        reader = await connect(path)
        return cls(writer, reader)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """An immediate (write-locked) transaction on the writer connection."""
        async with self._lock:
            await self.writer.execute("BEGIN IMMEDIATE")
            try:
                yield self.writer
            except BaseException:
                await self.writer.execute("ROLLBACK")
                raise
            await self.writer.execute("COMMIT")

    async def fetchone(self, sql: str, params: tuple[object, ...] = ()) -> aiosqlite.Row | None:
        """One row from the reader connection."""
        async with self.reader.execute(sql, params) as cur:
            row: aiosqlite.Row | None = await cur.fetchone()
            return row

    async def fetchall(self, sql: str, params: tuple[object, ...] = ()) -> list[aiosqlite.Row]:
        """All rows from the reader connection."""
        async with self.reader.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def close(self) -> None:
        await self.reader.close()
        await self.writer.close()
