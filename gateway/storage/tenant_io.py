"""Exporting one tenant as a JSON document, and importing such a document (either backend).

The document (`FORMAT`, `VERSION`) holds exactly one tenant: its row (settings included), the
users who are members of it with their password hashes, their MFA enrolments (the TOTP secret
still sealed) and recovery-code hashes, the tenant's memberships, pending invitations (token
hashes), service accounts, API keys (secret hashes), stored policy rules, secrets (ciphertext,
nonces, wrapped data keys and KEK references: never a value, never key material) and every
event of its audit chain with `prev_hash`/`hash`, so `gateway audit verify` passes after the
import. It is SENSITIVE (password and key hashes): the CLI writes it with mode 0600.

Guarantees:

* export reads one consistent snapshot, and every row is selected by the tenant's id (or by
  membership of it): nothing of another tenant appears, not even a shared user's other
  memberships;
* import validates the whole document first (every row belongs to the tenant, the audit chain
  verifies from its genesis), then writes everything in ONE transaction, keeping ids; a
  tenant id or slug, a user id or email, or any other row that already exists refuses the
  import with one line (`ImportRefused`) and nothing is written;
* the import appends a `tenant.import` event to the tenant's chain in that same transaction.

Not exported: sessions (users sign in again), e-mail tokens (short-lived), the platform role
`operator` (granted per installation), and BYOK key material (wrapped by the source
installation's master key: a BYOK tenant supplies its key again). Local KEKs derive from the
master key, so secrets and TOTP secrets open after an import only where that key is the same.

The document's tables and their SQL and JSON encodings are in `gateway.storage.tenant_sections`,
its format, errors and validation in `gateway.storage.tenant_document`; this module reads and
writes the databases, and re-exports the names callers use.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import asyncpg

from gateway.audit.events import Actor, AuditEvent, RequestContext
from gateway.storage.factory import Stores
from gateway.storage.postgres import audit as pg_audit
from gateway.storage.postgres.database import Connection, PostgresDatabase
from gateway.storage.sqlite import audit as sqlite_audit
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.tenant_document import (
    FORMAT,
    VERSION,
    Document,
    ImportRefused,
    TenantIOError,
    TenantNotFound,
    refuse,
    summary,
    validate,
)
from gateway.storage.tenant_sections import (
    BY_KEY,
    SECTIONS,
    Item,
    Section,
    insert_sql,
    render_sql,
    select_sql,
    to_item,
    to_params,
)

__all__ = [
    "BY_KEY",
    "FORMAT",
    "SECTIONS",
    "VERSION",
    "Document",
    "ImportRefused",
    "Item",
    "Section",
    "TenantIOError",
    "TenantNotFound",
    "export_tenant",
    "import_tenant",
    "insert_sql",
    "select_sql",
    "summary",
    "to_item",
    "to_params",
    "validate",
]

# ---------------------------------------------------------------------------------------------
# Export


async def _export_sqlite(db: SqliteDatabase, slug: str) -> dict[str, list[Item]]:
    # One read transaction on the reader connection: a WAL snapshot of every table.
    conn = db.reader
    await conn.execute("BEGIN")
    try:
        async with conn.execute("SELECT id FROM identity_tenants WHERE slug = ?", (slug,)) as cur:
            row = await cur.fetchone()
        if row is None:
            raise TenantNotFound(f"no tenant {slug}")
        tenant_id = str(row[0])
        found: dict[str, list[Item]] = {}
        for section in SECTIONS:
            async with conn.execute(select_sql(section, pg=False), (tenant_id,)) as cur:
                found[section.key] = [to_item(section, tuple(r)) for r in await cur.fetchall()]
    finally:
        await conn.execute("COMMIT")
    return found


async def _export_postgres(db: PostgresDatabase, slug: str) -> dict[str, list[Item]]:
    async with (
        db.connection() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        tenant_id = await conn.fetchval("SELECT id FROM identity.tenants WHERE slug = $1", slug)
        if tenant_id is None:
            raise TenantNotFound(f"no tenant {slug}")
        found: dict[str, list[Item]] = {}
        for section in SECTIONS:
            rows = await conn.fetch(select_sql(section, pg=True), tenant_id)
            found[section.key] = [to_item(section, tuple(r)) for r in rows]
    return found


async def export_tenant(stores: Stores, slug: str) -> Document:
    """The export document of tenant `slug` (`TenantNotFound` if there is none)."""
    if stores.postgres is not None:
        found = await _export_postgres(stores.postgres, slug)
    else:
        assert stores.sqlite is not None, "stores without a database"
        found = await _export_sqlite(stores.sqlite, slug)
    doc: Document = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": time.time(),
        "sensitive": "contains password, API-key and recovery-code hashes: keep it private",
        "tenant": found["tenant"][0],
    }
    for section in SECTIONS[1:]:
        doc[section.key] = found[section.key]
    return doc


# ---------------------------------------------------------------------------------------------
# Import


def _import_event(doc: Document, actor: Actor, ctx: RequestContext) -> AuditEvent:
    return AuditEvent(
        action="tenant.import",
        actor=actor,
        tenant_id=doc["tenant"]["id"],
        target=doc["tenant"]["id"],
        context=ctx,
        details={"slug": doc["tenant"]["slug"], **summary(doc)},
    )


async def _conflicts(fetch: Any, doc: Document, pg: bool) -> None:
    """Refuses (one line) when the tenant, a user or any of the tenant's rows already exists.

    `fetch(sql, params)` returns the first row or None, inside the import's transaction.
    """
    tenant = doc["tenant"]
    tenants = BY_KEY["tenant"].table(pg)
    sql = render_sql(f"SELECT slug FROM {tenants} WHERE id = ? OR slug = ?", pg)  # noqa: S608
    row = await fetch(sql, (tenant["id"], tenant["slug"]))
    if row is not None:
        raise refuse(f"a tenant with id {tenant['id']} or slug {tenant['slug']} already exists")
    users = BY_KEY["users"].table(pg)
    sql = render_sql(f"SELECT email FROM {users} WHERE id = ? OR lower(email) = lower(?)", pg)  # noqa: S608
    for user in doc["users"]:
        if await fetch(sql, (user["id"], user["email"])) is not None:
            raise refuse(f"user {user['email']} already exists")
    for section in SECTIONS[1:]:
        column = "chain" if section.key == "audit" else "tenant_id"
        if column not in section.columns:
            continue
        sql = render_sql(f"SELECT 1 FROM {section.table(pg)} WHERE {column} = ? LIMIT 1", pg)  # noqa: S608
        if await fetch(sql, (tenant["id"],)) is not None:
            raise refuse(f"this installation already holds {section.key} of tenant {tenant['id']}")


async def _import_sqlite(db: SqliteDatabase, doc: Document, event: AuditEvent) -> None:
    try:
        async with db.transaction() as conn:

            async def fetch(sql: str, params: tuple[Any, ...]) -> Any:
                async with conn.execute(sql, params) as cur:
                    return await cur.fetchone()

            await _conflicts(fetch, doc, pg=False)
            for section in SECTIONS:
                items = [doc["tenant"]] if section.key == "tenant" else doc[section.key]
                sql = insert_sql(section, pg=False)
                await conn.executemany(sql, [to_params(section, i, pg=False) for i in items])
            await sqlite_audit.append_event(conn, event)
    except sqlite3.IntegrityError as exc:
        raise refuse(f"conflicts with existing data ({exc})") from exc


async def _import_postgres(db: PostgresDatabase, doc: Document, event: AuditEvent) -> None:
    try:
        async with db.transaction() as conn:
            pg_conn: Connection = conn

            async def fetch(sql: str, params: tuple[Any, ...]) -> Any:
                return await pg_conn.fetchrow(sql, *params)

            await _conflicts(fetch, doc, pg=True)
            for section in SECTIONS:
                items = [doc["tenant"]] if section.key == "tenant" else doc[section.key]
                if items:
                    sql = insert_sql(section, pg=True)
                    await conn.executemany(sql, [to_params(section, i, pg=True) for i in items])
            await pg_audit.append_event(conn, event)
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise refuse(f"conflicts with existing data ({exc.__class__.__name__})") from exc
    except asyncpg.DataError as exc:
        raise refuse(f"a value does not fit its column ({exc})") from exc


async def import_tenant(stores: Stores, raw: Any, actor: Actor, ctx: RequestContext) -> Document:
    """Validates `raw` and writes it, with a `tenant.import` event by `actor`, in one
    transaction (`ImportRefused`: nothing written). Returns the imported document."""
    doc = validate(raw)
    event = _import_event(doc, actor, ctx)
    if stores.postgres is not None:
        await _import_postgres(stores.postgres, doc, event)
    else:
        assert stores.sqlite is not None, "stores without a database"
        await _import_sqlite(stores.sqlite, doc, event)
    return doc
