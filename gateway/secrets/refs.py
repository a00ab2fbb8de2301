"""Secret references: `secret://{tenant}/{name}` (latest) or `secret://{tenant}/{name}#{version}`.

Guarantees: `parse_ref` accepts exactly that grammar and fails closed on anything else (another
scheme, a path, a query, userinfo, a port, an empty or malformed part), raising `RefError`
whose message never echoes the input. Names use the characters Casbin's `secret:NAME` objects
accept, so every valid name is a valid policy object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEME = "secret://"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
VERSION = re.compile(r"[1-9][0-9]{0,8}")
MAX_REF_LENGTH = 512


class RefError(ValueError):
    """Not a secret reference this gateway resolves."""


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A parsed reference: the tenant (slug or id), the name, and a version or None (latest)."""

    tenant: str
    name: str
    version: int | None = None

    def __str__(self) -> str:
        return format_ref(self.tenant, self.name, self.version)


def format_ref(tenant: str, name: str, version: int | None = None) -> str:
    """The canonical text of a reference."""
    tail = f"#{version}" if version is not None else ""
    return f"{SCHEME}{tenant}/{name}{tail}"


def valid_name(name: str) -> bool:
    """Whether `name` may name a secret."""
    return NAME.fullmatch(name) is not None


def parse_ref(text: str) -> SecretRef:
    """The reference in `text`; `RefError` for unknown schemes or any malformed part."""
    if not isinstance(text, str) or len(text) > MAX_REF_LENGTH:
        raise RefError("not a secret reference")
    # SECURITY: one scheme only; vault://, env://, file:// and the like are never followed.
    if not text.startswith(SCHEME):
        raise RefError("unsupported reference scheme (only secret:// is resolved)")
    body, hashed, fragment = text[len(SCHEME) :].partition("#")
    tenant, slash, name = body.partition("/")
    if not slash or not TENANT.fullmatch(tenant) or not valid_name(name):
        raise RefError("a reference is secret://TENANT/NAME or secret://TENANT/NAME#VERSION")
    if hashed and not VERSION.fullmatch(fragment):
        raise RefError("a reference's version is a positive integer")
    return SecretRef(tenant, name, int(fragment) if hashed else None)
