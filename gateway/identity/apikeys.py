"""The API-key token format and the one-way hashing of key secrets and invitation tokens.

An API key is presented as `gw_<key id>_<secret>`, for example
`gw_key_3kT9...(22)_Xy7...(43)`:

* the key id is `key_` plus 22 base62 characters (see `models.new_id`);
* the secret is 43 base62 characters from the OS CSPRNG: 256 bits.

Neither part contains `_` after its own prefix, so the token splits unambiguously; parsing is
one anchored regex over a length-bounded string, and anything else is malformed.

Stored is only SHA-256(secret). A fast hash is right here, and Argon2 is not needed: Argon2's
cost protects low-entropy human passwords against offline guessing, but a 256-bit random secret
cannot be guessed however fast the hash is, and a fast hash keeps API-key authentication off
the password thread pool and cheap on every request. The same holds for invitation tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Final

from gateway.identity.models import BASE62, ID_BODY_LENGTH

__all__ = [
    "API_KEY_PREFIX",
    "ParsedApiKey",
    "format_api_key",
    "hash_secret",
    "is_well_formed_invitation_token",
    "new_api_key_secret",
    "new_invitation_token",
    "parse_api_key",
    "secret_matches",
]

API_KEY_PREFIX: Final = "gw_"
SECRET_LENGTH: Final = 43  # base62 characters: 43 * log2(62) > 256 bits

_TOKEN_RE: Final = re.compile(
    rf"gw_(key_[0-9A-Za-z]{{{ID_BODY_LENGTH}}})_([0-9A-Za-z]{{{SECRET_LENGTH}}})"
)
_TOKEN_LENGTH: Final = len(API_KEY_PREFIX) + 4 + ID_BODY_LENGTH + 1 + SECRET_LENGTH
_INVITATION_RE: Final = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class ParsedApiKey:
    """A well-formed API-key token split into its key id and its secret."""

    key_id: str
    secret: str = field(repr=False)


def new_api_key_secret() -> str:
    """256 bits of CSPRNG randomness as 43 base62 characters."""
    return "".join(secrets.choice(BASE62) for _ in range(SECRET_LENGTH))


def format_api_key(key_id: str, secret: str) -> str:
    """The plaintext token shown once to the key's creator."""
    return f"{API_KEY_PREFIX}{key_id}_{secret}"


def parse_api_key(token: str) -> ParsedApiKey | None:
    """The key id and secret of a well-formed token, else None (no store access needed)."""
    # SECURITY: attacker-controlled header; refuse anything but the exact shape before any I/O.
    if len(token) != _TOKEN_LENGTH:
        return None
    match = _TOKEN_RE.fullmatch(token)
    if match is None:
        return None
    return ParsedApiKey(key_id=match[1], secret=match[2])


def hash_secret(secret: str) -> str:
    """SHA-256 of a high-entropy secret, as 64 hex characters (what the store keeps)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Whether `secret` hashes to `stored_hash`, compared in constant time."""
    # SECURITY: a byte-by-byte compare would leak the stored hash through response timing.
    return hmac.compare_digest(hash_secret(secret).encode(), stored_hash.encode())


def new_invitation_token() -> str:
    """256 bits of CSPRNG randomness, url-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def is_well_formed_invitation_token(token: str) -> bool:
    """True for exactly 43 url-safe base64 characters (what `new_invitation_token` makes)."""
    return len(token) == 43 and _INVITATION_RE.fullmatch(token) is not None
