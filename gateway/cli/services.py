"""Opening the same stores and services as the running gateway, for CLI commands."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from gateway.config import GatewayConfig
from gateway.identity.passwords import PasswordHasher
from gateway.identity.service import IdentityService
from gateway.keyring import derive_key
from gateway.sessions.service import SessionService
from gateway.storage.memory.bus import MemoryChangeBus
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.identity import SqliteIdentityStore
from gateway.storage.sqlite.sessions import SqliteSessionStore
from gateway.storage.state import ensure_master_key, open_state_dir


@dataclass(frozen=True)
class CliServices:
    """What the bootstrap and operator commands act through."""

    config: GatewayConfig
    db: SqliteDatabase
    identity: IdentityService
    sessions: SessionService


@contextlib.asynccontextmanager
async def open_cli_services(config: GatewayConfig) -> AsyncIterator[CliServices]:
    """The configured stores (migrated) and the services over them, closed on exit.

    A running gateway on the same state sees what the CLI changes within its cache bound.
    """
    state = open_state_dir(config.state_dir)
    db = await SqliteDatabase.open(state.database)
    hasher = PasswordHasher()
    sessions = SessionService(
        SqliteSessionStore(db),
        MemoryChangeBus(),
        config.cookie,
        derive_key(ensure_master_key(state), "csrf"),
    )
    try:
        yield CliServices(config, db, IdentityService(SqliteIdentityStore(db), hasher), sessions)
    finally:
        sessions.close()
        await hasher.close()
        await db.close()
