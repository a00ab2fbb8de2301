"""The hash chain over audit events: tampering with any stored event breaks the chain."""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64


def canonical_encoding(record: dict[str, Any]) -> bytes:
    """A stable encoding of a record: sorted keys, no whitespace, UTF-8."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, record: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the record's canonical encoding."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical_encoding(record)).hexdigest()


def chain_key(tenant_id: str | None) -> str:
    """Which chain an event belongs to: its tenant's, or the platform chain."""
    return tenant_id or "platform"
