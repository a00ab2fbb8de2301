"""PostgreSQL outages: the stores fail closed and recover by themselves, on a private server.

A restart or a read-only (demoted) primary raises `StoreUnavailable`, never a raw driver
error; afterwards the same store objects work again without being recreated.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import asyncpg
import pytest

from gateway.audit.events import Actor, AuditEvent
from gateway.sessions import tokens
from gateway.sessions.models import SessionRecord
from gateway.storage.ports import StoreUnavailable
from gateway.storage.postgres.database import PostgresDatabase
from gateway.storage.postgres.identity import PostgresIdentityStore
from gateway.storage.postgres.migrate import migrate
from gateway.storage.postgres.sessions import PostgresSessionStore
from tests.support.services import ServerHandle

PrivatePostgres = Callable[[], AbstractAsyncContextManager[ServerHandle]]


def session() -> SessionRecord:
    now = time.time()
    return SessionRecord(
        id=tokens.new_session_id(),
        token_hash=tokens.hash_token(tokens.new_token()),
        user_id="u_1",
        tenant_id="t_a",
        created_at=now,
        last_seen_at=now,
        expires_at=now + 3600,
        idle_timeout=600,
    )


def event() -> AuditEvent:
    return AuditEvent(action="auth.signin", actor=Actor("system"), outcome="failure")


@pytest.fixture
async def server(private_postgres: PrivatePostgres) -> AsyncIterator[ServerHandle]:
    async with private_postgres() as handle:
        db = await PostgresDatabase.open(handle.url)
        try:
            await migrate(db)
        finally:
            await db.close()
        yield handle


async def test_a_restart_is_unavailable_then_recovers_without_a_new_store(
    server: ServerHandle,
) -> None:
    db = await PostgresDatabase.open(server.url, min_size=2, max_size=2)
    sessions, identity = PostgresSessionStore(db), PostgresIdentityStore(db)
    try:
        before = session()
        await sessions.create(before)
        await server.stop()
        with pytest.raises(StoreUnavailable):
            await sessions.get(before.id)
        with pytest.raises(StoreUnavailable):
            await sessions.create(session())
        with pytest.raises(StoreUnavailable):
            await identity.append_audit(event())
        await server.start()
        assert await sessions.get(before.id) == before
        after = session()
        await sessions.create(after)
        await identity.append_audit(event())
        assert await sessions.get(after.id) == after
    finally:
        await db.close()


async def test_opening_an_unreachable_database_is_unavailable(server: ServerHandle) -> None:
    await server.stop()
    with pytest.raises(StoreUnavailable):
        await PostgresDatabase.open(server.url, connect_timeout=2)


async def test_a_read_only_primary_is_unavailable_and_its_connection_is_dropped(
    server: ServerHandle,
) -> None:
    # The database default applies to new connections only, like a server that was demoted
    # to a standby: the pool's one connection is read-only from the start.
    admin = await asyncpg.connect(server.url)
    try:
        await admin.execute("ALTER DATABASE postgres SET default_transaction_read_only = on")
        db = await PostgresDatabase.open(server.url, min_size=1, max_size=1)
        store = PostgresSessionStore(db)
        try:
            kept = session()
            assert await store.get(kept.id) is None  # reads still work
            with pytest.raises(StoreUnavailable, match="ReadOnlySQLTransaction"):
                await store.create(kept)
            await admin.execute("ALTER DATABASE postgres RESET default_transaction_read_only")
            # Only a new connection sees the writable default: this passes only because the
            # read-only connection was dropped from the pool.
            await store.create(kept)
            assert await store.get(kept.id) == kept
        finally:
            await db.close()
    finally:
        await admin.close()


async def test_a_killed_connection_is_replaced(server: ServerHandle) -> None:
    db = await PostgresDatabase.open(server.url, min_size=1, max_size=1)
    store = PostgresSessionStore(db)
    try:
        pid = await db.fetchval("SELECT pg_backend_pid()")
        admin = await asyncpg.connect(server.url)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        record = dataclasses.replace(session(), mfa=True)
        try:
            await store.create(record)
        except StoreUnavailable:
            await store.create(record)  # at most the one call that found it dead fails
        assert await store.get(record.id) == record
        assert await db.fetchval("SELECT pg_backend_pid()") != pid
    finally:
        await db.close()
