"""The state directory and its key files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gateway.storage.migrations import MigrationError
from gateway.storage.sqlite.database import SqliteDatabase, connect, migrate, schema_status
from gateway.storage.state import StateError, open_state_dir


def test_keys_are_created_once_with_mode_0600(tmp_path: Path) -> None:
    state = open_state_dir(tmp_path / "s")
    key = state.master_key_path.read_bytes()
    assert stat.S_IMODE(state.master_key_path.stat().st_mode) == 0o600
    again = open_state_dir(tmp_path / "s")
    assert again.master_key_path.read_bytes() == key


def test_widened_key_mode_is_refused(tmp_path: Path) -> None:
    state = open_state_dir(tmp_path / "s")
    os.chmod(state.master_key_path, 0o640)
    with pytest.raises(StateError, match="0600"):
        open_state_dir(tmp_path / "s")


def test_world_writable_state_dir_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    os.chmod(root, 0o777)
    with pytest.raises(StateError, match="writable by others"):
        open_state_dir(root)


async def test_migrations_are_idempotent_and_tracked(tmp_path: Path) -> None:
    db = await connect(tmp_path / "g.db")
    try:
        first = await migrate(db)
        assert first and first[0] == "0001_meta"
        assert await migrate(db) == []
        status = await schema_status(db)
        assert status.current == status.latest and not status.outdated
    finally:
        await db.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = await connect(tmp_path / "g.db")
    try:
        await migrate(db)
        await db.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x', 0)")
        with pytest.raises(MigrationError, match="newer"):
            await migrate(db)
    finally:
        await db.close()


async def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "g.db")
    try:
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO gateway_meta VALUES ('k', 'v')")
                raise RuntimeError
        assert await db.fetchone("SELECT 1 FROM gateway_meta WHERE key = 'k'") is None
    finally:
        await db.close()
