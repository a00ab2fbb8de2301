"""The SQL shared by the SQLite and PostgreSQL secret stores, and row decoding.

Both adapters keep the same tables (SQLite 0008, PostgreSQL 0006) and differ only in
placeholders and schema prefix; `sql(template, pg)` renders one for either.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from gateway.secrets.envelope import SealedSecret
from gateway.secrets.ports import KekRef, Rewrap, SecretMeta, TenantKek

COLUMNS = (
    "tenant_id, name, version, fmt, kek_provider, kek_id, kek_version, wrapped_dek, nonce, "
    "ciphertext, created_at"
)
KEK = (
    "SELECT tenant_id, provider, key_id, version, material, updated_at FROM {s}secret_keks "
    "WHERE tenant_id = ?"
)
SET_KEK = (
    "INSERT INTO {s}secret_keks (tenant_id, provider, key_id, version, material, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id) DO UPDATE SET provider = excluded.provider, "
    "key_id = excluded.key_id, version = excluded.version, material = excluded.material, "
    "updated_at = excluded.updated_at"
)
HEAD = "SELECT last_version FROM {s}secret_heads WHERE tenant_id = ? AND name = ?"
CLAIM = (
    "INSERT INTO {s}secret_heads (tenant_id, name, last_version) VALUES (?, ?, ?) "
    "ON CONFLICT (tenant_id, name) DO UPDATE SET last_version = excluded.last_version "
    "WHERE {s}secret_heads.last_version < excluded.last_version"
)
INSERT = (
    f"INSERT INTO {{s}}secret_versions ({COLUMNS}) "  # noqa: S608 - constants
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
LATEST = (
    f"SELECT {COLUMNS} FROM {{s}}secret_versions WHERE tenant_id = ? AND name = ? "  # noqa: S608 - constants
    "ORDER BY version DESC LIMIT 1"
)
VERSION = (
    f"SELECT {COLUMNS} FROM {{s}}secret_versions WHERE tenant_id = ? AND name = ? AND version = ?"  # noqa: S608 - constants
)
TENANT_VERSIONS = (
    f"SELECT {COLUMNS} FROM {{s}}secret_versions WHERE tenant_id = ? ORDER BY name, version"  # noqa: S608 - constants
)
LIST = (
    "SELECT v.name, v.version, c.n, c.first, c.last, v.kek_provider, v.kek_id, v.kek_version "
    "FROM {s}secret_versions v JOIN (SELECT name, MAX(version) AS latest, COUNT(*) AS n, "
    "MIN(created_at) AS first, MAX(created_at) AS last FROM {s}secret_versions "
    "WHERE tenant_id = ? GROUP BY name) c ON v.name = c.name AND v.version = c.latest "
    "WHERE v.tenant_id = ? ORDER BY v.name"
)
DELETE = "DELETE FROM {s}secret_versions WHERE tenant_id = ? AND name = ?"
REWRAP = (
    "UPDATE {s}secret_versions SET kek_provider = ?, kek_id = ?, kek_version = ?, "
    "wrapped_dek = ? WHERE tenant_id = ? AND name = ? AND version = ? AND kek_provider = ? "
    "AND kek_id = ? AND kek_version = ?"
)
EXPIRE = "DELETE FROM {s}webhook_replays WHERE expires_at <= ?"
REMEMBER = (
    "INSERT INTO {s}webhook_replays (key, expires_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"
)
_PLACEHOLDER = re.compile(r"\?")


def sql(template: str, pg: bool) -> str:
    """The statement for SQLite (`?`, no schema) or PostgreSQL (`$n`, schema `gateway.`)."""
    text = template.replace("{s}", "gateway." if pg else "")
    if not pg:
        return text
    counter = iter(range(1, 1000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", text)


def sealed_row(sealed: SealedSecret) -> tuple[Any, ...]:
    """The INSERT parameters of a version, in `COLUMNS` order."""
    kek = sealed.kek
    return (
        sealed.tenant_id, sealed.name, sealed.version, sealed.fmt, kek.provider, kek.key_id,
        kek.version, sealed.wrapped_dek, sealed.nonce, sealed.ciphertext, sealed.created_at,
    )  # fmt: skip


def to_sealed(row: Sequence[Any]) -> SealedSecret:
    """A stored version from a row in `COLUMNS` order."""
    kek = KekRef(str(row[4]), str(row[5]), int(row[6]))
    return SealedSecret(
        tenant_id=str(row[0]), name=str(row[1]), version=int(row[2]), kek=kek,
        wrapped_dek=bytes(row[7]), nonce=bytes(row[8]), ciphertext=bytes(row[9]),
        created_at=float(row[10]), fmt=int(row[3]),
    )  # fmt: skip


def to_meta(row: Sequence[Any]) -> SecretMeta:
    """A listing entry from a `LIST` row."""
    kek = KekRef(str(row[5]), str(row[6]), int(row[7]))
    return SecretMeta(str(row[0]), int(row[1]), int(row[2]), float(row[3]), float(row[4]), kek)


def to_tenant_kek(row: Sequence[Any]) -> TenantKek:
    """A tenant's KEK setting from a `KEK` row."""
    material = None if row[4] is None else bytes(row[4])
    return TenantKek(
        str(row[0]), KekRef(str(row[1]), str(row[2]), int(row[3])), float(row[5]), material
    )


def kek_params(kek: TenantKek) -> tuple[Any, ...]:
    """The `SET_KEK` parameters."""
    ref = kek.kek
    return (kek.tenant_id, ref.provider, ref.key_id, ref.version, kek.material, kek.updated_at)


def rewrap_params(tenant_id: str, item: Rewrap) -> tuple[Any, ...]:
    """The `REWRAP` parameters: the new wrapping, guarded by the old KEK still being in place."""
    new, old = item.new, item.old
    return (
        new.provider, new.key_id, new.version, item.wrapped_dek, tenant_id, item.name,
        item.version, old.provider, old.key_id, old.version,
    )  # fmt: skip
