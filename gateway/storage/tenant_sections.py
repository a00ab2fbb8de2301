"""The tables of a tenant export and how their rows map to SQL and to JSON (either backend).

`SECTIONS` lists, in insertion (foreign-key) order, every table `gateway.storage.tenant_io`
exports and imports, with the columns it carries and how values are encoded. Guarantees:

* every section's WHERE has exactly one parameter, the tenant's id, and selects only rows of
  that tenant (or of its members): nothing of another tenant can be selected;
* only constants of this module are interpolated into SQL; every value is a parameter;
* `to_item` and `to_params` are inverse encodings of one row (lists, booleans, base64 for
  bytes, JSON objects), so an exported row is imported unchanged into either backend.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BY_KEY",
    "SECTIONS",
    "Item",
    "Section",
    "insert_sql",
    "render_sql",
    "select_sql",
    "to_item",
    "to_params",
]

Item = dict[str, Any]

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


def render_sql(sql: str, pg: bool) -> str:
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
    return render_sql(sql, pg)


def insert_sql(section: Section, pg: bool) -> str:
    """The INSERT of one row of a section (only constants are interpolated)."""
    cols = ", ".join(section.columns)
    marks = ", ".join("?" for _ in section.columns)
    return render_sql(f"INSERT INTO {section.table(pg)} ({cols}) VALUES ({marks})", pg)  # noqa: S608


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
