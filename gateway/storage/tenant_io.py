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
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway.audit.chain import GENESIS
from gateway.audit.events import Actor, AuditEvent, RequestContext
from gateway.audit.store import StoredEvent
from gateway.audit.verify import link_problem
from gateway.storage.factory import Stores
from gateway.storage.postgres import audit as pg_audit
from gateway.storage.postgres.database import Connection, PostgresDatabase
from gateway.storage.sqlite import audit as sqlite_audit
from gateway.storage.sqlite.database import SqliteDatabase

FORMAT = "gateway-tenant-export"
VERSION = 1

Document = dict[str, Any]
Item = dict[str, Any]


class TenantIOError(Exception):
    """An export or import that cannot be done; the message is one line for the operator."""


class TenantNotFound(TenantIOError):
    """The tenant to export does not exist."""


class ImportRefused(TenantIOError):
    """The document is invalid or conflicts with this installation: nothing was written."""


_MEMBERS = "user_id IN (SELECT user_id FROM {m} WHERE tenant_id = ?)"


@dataclass(frozen=True, slots=True)
class Section:
    """One table's rows of the tenant: how they are selected and how values are encoded."""

    key: str
    sqlite: str
    pg: str
    columns: tuple[str, ...]
    where: str
    order: str
    lists: frozenset[str] = frozenset()
    bools: frozenset[str] = frozenset()
    blobs: frozenset[str] = frozenset()
    jsons: frozenset[str] = frozenset()

    def table(self, pg: bool) -> str:
        return self.pg if pg else self.sqlite


def _cols(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# In insertion order (foreign keys). Every WHERE has exactly one parameter: the tenant's id.
SECTIONS: tuple[Section, ...] = (
    Section(
        "tenant", "identity_tenants", "identity.tenants",
        _cols("id slug created_at features plan upstream require_mfa"), "id = ?", "id",
        lists=frozenset({"features", "require_mfa"}),
    ),
    Section(
        "users", "identity_users", "identity.users",
        _cols("id email password_hash email_verified created_at"),
        "id IN (SELECT user_id FROM {m} WHERE tenant_id = ?)", "created_at, id",
        bools=frozenset({"email_verified"}),
    ),
    Section(
        "memberships", "identity_memberships", "identity.memberships",
        _cols("tenant_id user_id roles created_at"), "tenant_id = ?", "created_at, user_id",
        lists=frozenset({"roles"}),
    ),
    Section(
        "invitations", "identity_invitations", "identity.invitations",
        _cols("id tenant_id email role token_hash created_at expires_at"),
        "tenant_id = ? AND accepted_at IS NULL", "created_at, id",
    ),
    Section(
        "service_accounts", "identity_service_accounts", "identity.service_accounts",
        _cols("id tenant_id name roles created_at"), "tenant_id = ?", "created_at, id",
        lists=frozenset({"roles"}),
    ),
    Section(
        "api_keys", "identity_api_keys", "identity.api_keys",
        _cols("id tenant_id service_account_id secret_hash created_at expires_at revoked_at"),
        "tenant_id = ?", "created_at, id",
    ),
    Section(
        "mfa", "identity_mfa", "identity.mfa",
        _cols("user_id secret_ciphertext created_at enabled_at last_step"), _MEMBERS, "user_id",
    ),
    Section(
        "recovery_codes", "identity_recovery_codes", "identity.recovery_codes",
        _cols("user_id code_hash used_at"), _MEMBERS, "user_id, code_hash",
    ),
    Section(
        "rules", "policy_rules", "gateway.policy_rules",
        _cols("tenant_id position sub obj act eft"), "tenant_id = ?", "position",
    ),
    Section(
        "secret_keks", "secret_keks", "gateway.secret_keks",
        _cols("tenant_id provider key_id version updated_at"), "tenant_id = ?", "tenant_id",
    ),
    Section(
        "secret_heads", "secret_heads", "gateway.secret_heads",
        _cols("tenant_id name last_version"), "tenant_id = ?", "name",
    ),
    Section(
        "secrets", "secret_versions", "gateway.secret_versions",
        _cols(
            "tenant_id name version fmt kek_provider kek_id kek_version wrapped_dek nonce "
            "ciphertext created_at"
        ),
        "tenant_id = ?", "name, version",
        blobs=frozenset({"wrapped_dek", "nonce", "ciphertext"}),
    ),
    Section(
        "audit", "audit_events", "gateway.audit_events",
        _cols("id chain ts tenant_id action outcome record prev_hash hash"), "chain = ?", "seq",
        jsons=frozenset({"record"}),
    ),
)  # fmt: skip
BY_KEY = {s.key: s for s in SECTIONS}
_PLACEHOLDER = re.compile(r"\?")


def _render(sql: str, pg: bool) -> str:
    """`?` placeholders for SQLite, `$n` for PostgreSQL; `{m}` is the memberships table."""
    sql = sql.replace("{m}", BY_KEY["memberships"].table(pg))
    if not pg:
        return sql
    counter = iter(range(1, 1000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


def select_sql(section: Section, pg: bool) -> str:
    """The SELECT of one section's rows of a tenant (only constants are interpolated)."""
    cols = ", ".join(section.columns)
    sql = f"SELECT {cols} FROM {section.table(pg)} WHERE {section.where} ORDER BY {section.order}"  # noqa: S608
    return _render(sql, pg)


def insert_sql(section: Section, pg: bool) -> str:
    """The INSERT of one row of a section (only constants are interpolated)."""
    cols = ", ".join(section.columns)
    marks = ", ".join("?" for _ in section.columns)
    return _render(f"INSERT INTO {section.table(pg)} ({cols}) VALUES ({marks})", pg)  # noqa: S608


def to_item(section: Section, row: Sequence[Any]) -> Item:
    """A stored row as JSON-ready values (lists, booleans, base64 for bytes, objects)."""
    item: Item = {}
    for name, value in zip(section.columns, row, strict=True):
        if value is None:
            item[name] = None
        elif name in section.lists:
            item[name] = list(json.loads(value) if isinstance(value, str) else value)
        elif name in section.bools:
            item[name] = bool(value)
        elif name in section.blobs:
            item[name] = base64.b64encode(bytes(value)).decode("ascii")
        elif name in section.jsons:
            item[name] = json.loads(value) if isinstance(value, str | bytes) else dict(value)
        else:
            item[name] = value
    return item


def to_params(section: Section, item: Item, pg: bool) -> tuple[Any, ...]:
    """A document row as the INSERT parameters of the backend (validated by `validate`)."""
    params: list[Any] = []
    for name in section.columns:
        value = item[name]
        if value is None:
            params.append(None)
        elif name in section.lists:
            params.append(list(value) if pg else json.dumps(list(value)))
        elif name in section.bools:
            params.append(bool(value) if pg else int(bool(value)))
        elif name in section.blobs:
            params.append(base64.b64decode(value, validate=True))
        elif name in section.jsons:
            params.append(json.dumps(value, separators=(",", ":")))
        else:
            params.append(value)
    return tuple(params)


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


def summary(doc: Document) -> dict[str, int]:
    """How many rows of each section a (valid) document holds, for messages and audit."""
    return {s.key: len(doc[s.key]) for s in SECTIONS[1:]}


# ---------------------------------------------------------------------------------------------
# Validation


def _refuse(message: str) -> ImportRefused:
    return ImportRefused(f"import refused: {message}")


def _check_value(section: Section, name: str, value: Any) -> None:
    where = f"{section.key}.{name}"
    if value is None:
        return
    if name in section.lists:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _refuse(f"{where} must be a list of strings")
    elif name in section.bools:
        if not isinstance(value, bool):
            raise _refuse(f"{where} must be true or false")
    elif name in section.blobs:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise _refuse(f"{where} must be base64") from None
    elif name in section.jsons:
        if not isinstance(value, dict):
            raise _refuse(f"{where} must be an object")
    elif not isinstance(value, str | int | float) or isinstance(value, bool):
        raise _refuse(f"{where} must be a string or a number")


def _rows(doc: Document, section: Section) -> list[Item]:
    raw = [doc.get("tenant")] if section.key == "tenant" else doc.get(section.key)
    if not isinstance(raw, list):
        raise _refuse(f"`{section.key}` is missing or not a list")
    for item in raw:
        if not isinstance(item, dict) or set(item) != set(section.columns):
            raise _refuse(f"a row of `{section.key}` does not have the columns of that table")
        for name in section.columns:
            _check_value(section, name, item[name])
    return raw


def _check_chain(tenant_id: str, events: list[Item]) -> None:
    prev = GENESIS
    for seq, item in enumerate(events, start=1):
        if item["chain"] != tenant_id:
            raise _refuse(f"audit event {item['id']} is not in the tenant's chain")
        columns = {k: item[k] for k in ("id", "tenant_id", "action", "outcome", "ts")}
        event = StoredEvent(
            seq, tenant_id, item["record"], item["prev_hash"], item["hash"], columns
        )
        problem = link_problem(prev, event)
        if problem is not None:
            raise _refuse(f"audit event {item['id']} does not verify: {problem}")
        prev = event.hash


def validate(doc: Any) -> Document:
    """The document if it is a well-formed export of exactly one tenant, else `ImportRefused`."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _refuse(f'not a tenant export (no "format": "{FORMAT}")')
    if doc.get("version") != VERSION:
        raise _refuse(f"unsupported export version {doc.get('version')!r} (expected {VERSION})")
    rows = {s.key: _rows(doc, s) for s in SECTIONS}
    tenant = rows["tenant"][0]
    tenant_id, slug = tenant["id"], tenant["slug"]
    if not isinstance(tenant_id, str) or not isinstance(slug, str) or not tenant_id:
        raise _refuse("the tenant has no id or slug")
    # SECURITY: every row must belong to this tenant or to one of its members.
    for section in SECTIONS[1:]:
        owned = "tenant_id" in section.columns and section.key != "audit"
        if owned and any(item["tenant_id"] != tenant_id for item in rows[section.key]):
            raise _refuse(f"`{section.key}` holds a row of another tenant")
    users = {u["id"] for u in rows["users"]}
    members = {m["user_id"] for m in rows["memberships"]}
    if users != members:
        raise _refuse("`users` and `memberships` do not name the same users")
    for key in ("mfa", "recovery_codes"):
        if any(item["user_id"] not in users for item in rows[key]):
            raise _refuse(f"`{key}` names a user who is not a member")
    accounts = {a["id"] for a in rows["service_accounts"]}
    if any(k["service_account_id"] not in accounts for k in rows["api_keys"]):
        raise _refuse("an API key names a service account that is not in the document")
    _check_chain(tenant_id, rows["audit"])
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
    sql = _render(f"SELECT slug FROM {tenants} WHERE id = ? OR slug = ?", pg)  # noqa: S608
    row = await fetch(sql, (tenant["id"], tenant["slug"]))
    if row is not None:
        raise _refuse(f"a tenant with id {tenant['id']} or slug {tenant['slug']} already exists")
    users = BY_KEY["users"].table(pg)
    sql = _render(f"SELECT email FROM {users} WHERE id = ? OR lower(email) = lower(?)", pg)  # noqa: S608
    for user in doc["users"]:
        if await fetch(sql, (user["id"], user["email"])) is not None:
            raise _refuse(f"user {user['email']} already exists")
    for section in SECTIONS[1:]:
        column = "chain" if section.key == "audit" else "tenant_id"
        if column not in section.columns:
            continue
        sql = _render(f"SELECT 1 FROM {section.table(pg)} WHERE {column} = ? LIMIT 1", pg)  # noqa: S608
        if await fetch(sql, (tenant["id"],)) is not None:
            raise _refuse(f"this installation already holds {section.key} of tenant {tenant['id']}")


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
        raise _refuse(f"conflicts with existing data ({exc})") from exc


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
        raise _refuse(f"conflicts with existing data ({exc.__class__.__name__})") from exc
    except asyncpg.DataError as exc:
        raise _refuse(f"a value does not fit its column ({exc})") from exc


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
