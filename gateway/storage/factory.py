"""Opening the configured stores: the embedded default, or PostgreSQL and Redis.

This module and `gateway/app.py` are the only places that name concrete adapters. Both the
running gateway and the CLI open their stores here, so they always work on the same data.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from gateway.config import GatewayConfig
from gateway.observability.stores import instrument_stores
from gateway.policy.ports import TenantRuleStore
from gateway.ratelimit.factory import build_store
from gateway.ratelimit.stores import RateLimitStore
from gateway.storage.memory.bus import MemoryChangeBus
from gateway.storage.migrations import MigrationError
from gateway.storage.ports import ChangeBus, IdentityStore, SessionStore
from gateway.storage.postgres import migrate as pg_migrate
from gateway.storage.postgres.database import PostgresDatabase
from gateway.storage.postgres.identity import PostgresIdentityStore
from gateway.storage.postgres.policy import PostgresTenantRuleStore
from gateway.storage.postgres.sessions import PostgresSessionStore
from gateway.storage.redis.bus import RedisChangeBus
from gateway.storage.redis.client import RedisHandle, open_redis
from gateway.storage.redis.sessions import RedisSessionCache
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.identity import SqliteIdentityStore
from gateway.storage.sqlite.policy import SqliteTenantRuleStore
from gateway.storage.sqlite.sessions import SqliteSessionStore
from gateway.storage.state import StateDir

Check = Callable[[], Awaitable[None]]
MigrateMode = Literal["auto", "check"]

EMBEDDED_CACHE_TTL = 1.0
"""Cache age bound without a shared bus: changes made by another process show within it."""
BUS_CACHE_TTL = 10.0
"""Cache age bound while the Redis change bus delivers every change notice."""


class SchemaOutdated(MigrationError):
    """The PostgreSQL schema is older than this gateway and may not be migrated here."""


@dataclass
class Stores:
    """The stores of one process, ready for the services above them."""

    backend: Literal["sqlite", "postgres"]
    identity: IdentityStore
    sessions: SessionStore
    rules: TenantRuleStore
    bus: ChangeBus
    rate_limits: RateLimitStore
    cache_ttl: float
    sqlite: SqliteDatabase | None = None
    postgres: PostgresDatabase | None = None
    redis: RedisHandle | None = None
    checks: dict[str, Check] = field(default_factory=dict)


async def open_postgres(config: GatewayConfig, mode: MigrateMode) -> PostgresDatabase:
    """The pool, with the schema brought to (or verified at) the code's version."""
    assert config.database_url is not None
    db = await PostgresDatabase.open(
        config.database_url.get_secret_value(),
        min_size=config.storage.pool_min,
        max_size=config.storage.pool_max,
    )
    try:
        status = await pg_migrate.schema_status(db)
        if status.outdated and (mode == "auto" or config.auto_migrate):
            await pg_migrate.migrate(db)
        elif status.outdated:
            raise SchemaOutdated(
                f"the database schema is at version {status.current}, this gateway needs "
                f"{status.latest}: run `gateway migrate` (or set auto_migrate: true)"
            )
    except BaseException:
        await db.close()
        raise
    return db


async def _sqlite_stores(state: StateDir) -> Stores:
    db = await SqliteDatabase.open(state.database)

    async def ready() -> None:
        await db.fetchone("SELECT 1")

    return Stores(
        "sqlite", SqliteIdentityStore(db), SqliteSessionStore(db), SqliteTenantRuleStore(db),
        MemoryChangeBus(), build_store(None), EMBEDDED_CACHE_TTL, sqlite=db,
        checks={"database": ready},
    )  # fmt: skip


async def _postgres_stores(config: GatewayConfig, mode: MigrateMode) -> Stores:
    db = await open_postgres(config, mode)

    async def ready() -> None:
        await db.fetchval("SELECT 1")

    return Stores(
        "postgres", PostgresIdentityStore(db), PostgresSessionStore(db),
        PostgresTenantRuleStore(db), MemoryChangeBus(), build_store(None), EMBEDDED_CACHE_TTL,
        postgres=db, checks={"database": ready},
    )  # fmt: skip


async def _add_redis(stores: Stores, config: GatewayConfig) -> None:
    """Redis in front: the session cache, the shared change bus, shared rate limits."""
    assert config.redis_url is not None
    handle = open_redis(config.redis_url.get_secret_value(), prefix=config.storage.redis_prefix)
    bus = RedisChangeBus(handle)
    await bus.start()
    stores.redis = handle
    stores.bus = bus
    stores.sessions = RedisSessionCache(stores.sessions, handle)
    stores.rate_limits = build_store(handle.client, prefix=config.storage.redis_prefix)
    stores.cache_ttl = BUS_CACHE_TTL


async def _close(stores: Stores) -> None:
    if isinstance(stores.bus, RedisChangeBus):
        await stores.bus.close()
    if isinstance(stores.sessions, RedisSessionCache):
        await stores.sessions.close()
    if stores.redis is not None:
        await stores.redis.aclose()
    if stores.postgres is not None:
        await stores.postgres.close()
    if stores.sqlite is not None:
        await stores.sqlite.close()


@contextlib.asynccontextmanager
async def open_stores(
    config: GatewayConfig, state: StateDir, mode: MigrateMode = "check"
) -> AsyncIterator[Stores]:
    """The configured stores, closed on exit.

    SQLite migrates itself. PostgreSQL is migrated in `auto` mode (`gateway migrate`) or with
    `auto_migrate: true`; otherwise an outdated schema raises `SchemaOutdated`.
    """
    if config.database_url is not None:
        stores = await _postgres_stores(config, mode)
    else:
        stores = await _sqlite_stores(state)
    try:
        if config.redis_url is not None:
            await _add_redis(stores, config)
        yield instrument_stores(stores)
    finally:
        await _close(stores)


async def migrate_configured(config: GatewayConfig, state: StateDir) -> list[str]:
    """`gateway migrate`: applies pending migrations to the configured database."""
    if config.database_url is None:
        from gateway.storage.sqlite.database import connect, create_private_file
        from gateway.storage.sqlite.database import migrate as sqlite_migrate

        create_private_file(state.database)
        conn = await connect(state.database)
        try:
            return await sqlite_migrate(conn)
        finally:
            await conn.close()
    db = await PostgresDatabase.open(config.database_url.get_secret_value(), min_size=1, max_size=2)
    try:
        return await pg_migrate.migrate(db)
    finally:
        await db.close()
