"""The audit reader of a process's configured stores (the embedded default or PostgreSQL)."""

from __future__ import annotations

from gateway.audit.store import AuditReader
from gateway.storage.factory import Stores
from gateway.storage.postgres.audit import PostgresAuditReader
from gateway.storage.sqlite.audit import SqliteAuditReader


def reader_for(stores: Stores) -> AuditReader:
    """The reader over the same database the stores write their events to."""
    if stores.postgres is not None:
        return PostgresAuditReader(stores.postgres)
    assert stores.sqlite is not None, "stores without a database"
    return SqliteAuditReader(stores.sqlite)
