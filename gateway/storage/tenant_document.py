"""The tenant export document: its format, its errors, and its validation before an import.

`validate` is the gate of `gateway.storage.tenant_io.import_tenant`: nothing is written unless
it accepts the whole document. It guarantees that an accepted document:

* has this format and version, and every section holds rows with exactly its table's columns
  and well-typed values (lists of strings, booleans, base64, objects, strings or numbers);
* holds exactly one tenant, and every other row belongs to that tenant or to one of its
  members (users and memberships name the same users; MFA rows and recovery codes only
  members; API keys only service accounts of the document);
* carries that tenant's audit chain, which verifies from its genesis.

Every refusal is an `ImportRefused` with a one-line message. This module does no I/O.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from gateway.audit.chain import GENESIS
from gateway.audit.store import StoredEvent
from gateway.audit.verify import link_problem
from gateway.storage.tenant_sections import SECTIONS, Item, Section

__all__ = [
    "FORMAT",
    "VERSION",
    "Document",
    "ImportRefused",
    "TenantIOError",
    "TenantNotFound",
    "refuse",
    "summary",
    "validate",
]

FORMAT = "gateway-tenant-export"
VERSION = 1

Document = dict[str, Any]


class TenantIOError(Exception):
    """An export or import that cannot be done; the message is one line for the operator."""


class TenantNotFound(TenantIOError):
    """The tenant to export does not exist."""


class ImportRefused(TenantIOError):
    """The document is invalid or conflicts with this installation: nothing was written."""


def summary(doc: Document) -> dict[str, int]:
    """How many rows of each section a (valid) document holds, for messages and audit."""
    return {s.key: len(doc[s.key]) for s in SECTIONS[1:]}


def refuse(message: str) -> ImportRefused:
    """The `ImportRefused` to raise for `message` (one line, prefixed for the operator)."""
    return ImportRefused(f"import refused: {message}")


def _check_value(section: Section, name: str, value: Any) -> None:
    where = f"{section.key}.{name}"
    if value is None:
        return
    if name in section.lists:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise refuse(f"{where} must be a list of strings")
    elif name in section.bools:
        if not isinstance(value, bool):
            raise refuse(f"{where} must be true or false")
    elif name in section.blobs:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise refuse(f"{where} must be base64") from None
    elif name in section.jsons:
        if not isinstance(value, dict):
            raise refuse(f"{where} must be an object")
    elif not isinstance(value, str | int | float) or isinstance(value, bool):
        raise refuse(f"{where} must be a string or a number")


def _rows(doc: Document, section: Section) -> list[Item]:
    raw = [doc.get("tenant")] if section.key == "tenant" else doc.get(section.key)
    if not isinstance(raw, list):
        raise refuse(f"`{section.key}` is missing or not a list")
    for item in raw:
        if not isinstance(item, dict) or set(item) != set(section.columns):
            raise refuse(f"a row of `{section.key}` does not have the columns of that table")
        for name in section.columns:
            _check_value(section, name, item[name])
    return raw


def _check_chain(tenant_id: str, events: list[Item]) -> None:
    prev = GENESIS
    for seq, item in enumerate(events, start=1):
        if item["chain"] != tenant_id:
            raise refuse(f"audit event {item['id']} is not in the tenant's chain")
        columns = {k: item[k] for k in ("id", "tenant_id", "action", "outcome", "ts")}
        event = StoredEvent(
            seq, tenant_id, item["record"], item["prev_hash"], item["hash"], columns
        )
        problem = link_problem(prev, event)
        if problem is not None:
            raise refuse(f"audit event {item['id']} does not verify: {problem}")
        prev = event.hash


def validate(doc: Any) -> Document:
    """The document if it is a well-formed export of exactly one tenant, else `ImportRefused`."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise refuse(f'not a tenant export (no "format": "{FORMAT}")')
    if doc.get("version") != VERSION:
        raise refuse(f"unsupported export version {doc.get('version')!r} (expected {VERSION})")
    rows = {s.key: _rows(doc, s) for s in SECTIONS}
    tenant = rows["tenant"][0]
    tenant_id, slug = tenant["id"], tenant["slug"]
    if not isinstance(tenant_id, str) or not isinstance(slug, str) or not tenant_id:
        raise refuse("the tenant has no id or slug")
    # SECURITY: every row must belong to this tenant or to one of its members.
    for section in SECTIONS[1:]:
        owned = "tenant_id" in section.columns and section.key != "audit"
        if owned and any(item["tenant_id"] != tenant_id for item in rows[section.key]):
            raise refuse(f"`{section.key}` holds a row of another tenant")
    users = {u["id"] for u in rows["users"]}
    members = {m["user_id"] for m in rows["memberships"]}
    if users != members:
        raise refuse("`users` and `memberships` do not name the same users")
    for key in ("mfa", "recovery_codes"):
        if any(item["user_id"] not in users for item in rows[key]):
            raise refuse(f"`{key}` names a user who is not a member")
    accounts = {a["id"] for a in rows["service_accounts"]}
    if any(k["service_account_id"] not in accounts for k in rows["api_keys"]):
        raise refuse("an API key names a service account that is not in the document")
    _check_chain(tenant_id, rows["audit"])
    return doc
