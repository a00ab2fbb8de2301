"""Identity records: tenants, users, memberships, invitations, service accounts, API keys.

All records are immutable values. Timestamps are seconds since the epoch (float). Ids are
opaque random strings with a type prefix (`t_`, `u_`, `sa_`, `key_`, `inv_`) followed by 22
base62 characters (about 131 bits): url-safe, unguessable, and free of `_` after the prefix,
so an id can sit between `_` separators (API keys) without ambiguity. Secret-bearing fields
(password hashes, API-key secret hashes) are excluded from `repr`.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "ID_BODY_LENGTH",
    "OPERATOR_ROLE",
    "ROLES",
    "ApiKey",
    "ApiKeyPrincipal",
    "ApiKeyRecord",
    "AuthResult",
    "Invitation",
    "Membership",
    "ServiceAccount",
    "SigninResult",
    "SignupResult",
    "Tenant",
    "User",
    "UserCredentials",
    "new_id",
]

ROLES: Final = ("viewer", "editor", "admin")
"""The tenant roles, least to most privileged."""

OPERATOR_ROLE: Final = "operator"
"""The platform role (all tenants); held in the operators table, never in a membership."""

BASE62: Final = string.digits + string.ascii_letters
ID_BODY_LENGTH: Final = 22

IdKind = Literal["t", "u", "sa", "key", "inv"]


def new_id(kind: IdKind) -> str:
    """A fresh `<kind>_<22 base62 chars>` id from the OS CSPRNG (about 131 bits)."""
    # SECURITY: ids appear in URLs and API keys; they must not be guessable or sequential.
    return f"{kind}_" + "".join(secrets.choice(BASE62) for _ in range(ID_BODY_LENGTH))


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant: `slug` is unique and `[a-z0-9-]{2,63}`; `features` sorted, unique."""

    id: str
    slug: str
    created_at: float
    features: tuple[str, ...] = ()
    plan: str | None = None
    upstream: str | None = None
    require_mfa: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class User:
    """A human account; `email` is stored normalized (trimmed, lower-case) and unique."""

    id: str
    email: str
    created_at: float
    email_verified: bool = False


@dataclass(frozen=True, slots=True)
class UserCredentials:
    """A user with their stored password hash; only the sign-in path needs this."""

    user: User
    password_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Membership:
    """A user's roles in one tenant (`roles` sorted, unique, non-empty)."""

    tenant_id: str
    user_id: str
    roles: tuple[str, ...]
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Invitation:
    """An invitation to join `tenant_id` with `role`; single use, until `expires_at`.

    The store keeps only the SHA-256 of the token that the invitee presents.
    """

    id: str
    tenant_id: str
    email: str
    role: str
    expires_at: float
    accepted_at: float | None = None


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """A non-human principal of one tenant, authenticated by API keys."""

    id: str
    tenant_id: str
    name: str
    roles: tuple[str, ...]
    created_at: float


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key's metadata (never its secret)."""

    id: str
    tenant_id: str
    service_account_id: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key with the SHA-256 (hex) of its secret, as the store holds it."""

    key: ApiKey
    secret_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Who signed up or in, into which tenant, with which roles there (sorted)."""

    user: User
    tenant: Tenant
    roles: tuple[str, ...]


SignupResult = AuthResult
SigninResult = AuthResult


@dataclass(frozen=True, slots=True)
class ApiKeyPrincipal:
    """A verified API key: the tenant it is bound to, its service account and their roles."""

    tenant: Tenant
    service_account: ServiceAccount
    key_id: str
    roles: tuple[str, ...]
