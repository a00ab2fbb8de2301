"""Validation and normalization of identity input: emails, tenant slugs, roles, names.

Every function returns the normalized value the store keeps, or raises `InvalidInput` with a
user-facing message. Inputs are bounded before any regex runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from gateway.identity.errors import InvalidInput
from gateway.identity.models import ROLES

__all__ = [
    "RESERVED_SLUGS",
    "is_valid_slug",
    "normalize_email",
    "normalize_roles",
    "normalize_slug",
    "validate_name",
    "validate_role",
]

MAX_EMAIL_LENGTH: Final = 254
MAX_NAME_LENGTH: Final = 64

RESERVED_SLUGS: Final = frozenset({"admin", "api", "www", "gateway", "static"})
"""Slugs no tenant may take: they collide with hosts and paths the platform itself uses."""

_SLUG_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])")
_LOCAL_RE: Final = re.compile(r"[^\s@\x00-\x1f\x7f]+")
_DOMAIN_RE: Final = re.compile(r"[^\s@\x00-\x1f\x7f.]+(?:\.[^\s@\x00-\x1f\x7f.]+)+")
_NAME_RE: Final = re.compile(r"[^\x00-\x1f\x7f]+")


def normalize_email(email: str) -> str:
    """The trimmed, lower-cased email if it has one `@`, a dotted domain and ≤ 254 characters."""
    # SECURITY: attacker-sized input; bound it before matching.
    if len(email) > 4 * MAX_EMAIL_LENGTH:
        raise InvalidInput("email", "email address is too long")
    normalized = email.strip().lower()
    if len(normalized) > MAX_EMAIL_LENGTH:
        raise InvalidInput("email", "email address is too long")
    local, at, domain = normalized.partition("@")
    if not at or not _LOCAL_RE.fullmatch(local) or not _DOMAIN_RE.fullmatch(domain):
        raise InvalidInput("email", "enter a valid email address")
    return normalized


def is_valid_slug(slug: str) -> bool:
    """True for `[a-z0-9-]{2,63}` without a leading or trailing dash (reserved or not)."""
    return len(slug) <= 63 and _SLUG_RE.fullmatch(slug) is not None


def normalize_slug(slug: str) -> str:
    """The trimmed, lower-cased slug if it is well-formed and not reserved."""
    normalized = slug.strip().lower() if len(slug) <= 256 else slug
    if not is_valid_slug(normalized):
        raise InvalidInput(
            "tenant",
            "tenant name must be 2-63 lower-case letters, digits or dashes, "
            "not starting or ending with a dash",
        )
    # SECURITY: a tenant named like a platform host or path could impersonate the platform.
    if normalized in RESERVED_SLUGS:
        raise InvalidInput("tenant", f"the tenant name {normalized!r} is reserved")
    return normalized


def validate_role(role: str) -> str:
    """`role` if it is one of the tenant roles (`operator` is not a tenant role)."""
    # SECURITY: privilege escalation through an unknown or platform role in a membership.
    if role not in ROLES:
        raise InvalidInput("roles", f"role must be one of: {', '.join(ROLES)}")
    return role


def normalize_roles(roles: Iterable[str]) -> tuple[str, ...]:
    """The roles, validated, deduplicated and sorted; at least one."""
    result = tuple(sorted({validate_role(role) for role in roles}))
    if not result:
        raise InvalidInput("roles", "at least one role is required")
    return result


def validate_name(name: str) -> str:
    """A trimmed display name of 1-64 printable characters."""
    trimmed = name.strip() if len(name) <= 4 * MAX_NAME_LENGTH else name
    if not 1 <= len(trimmed) <= MAX_NAME_LENGTH or not _NAME_RE.fullmatch(trimmed):
        raise InvalidInput("name", f"name must be 1-{MAX_NAME_LENGTH} printable characters")
    return trimmed
