"""Session tokens, public session ids and CSRF tokens.

Guarantees: a session token carries 256 bits from the OS CSPRNG and is only ever stored as
its SHA-256 (hex); the public session id is independent randomness, so knowing an id (shown
in APIs, audit and logs) reveals nothing about the token; a CSRF token is bound to one
session's token hash by an HMAC under a server key and is compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

TOKEN_BYTES = 32
SESSION_ID_PREFIX = "s_"
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_SESSION_ID_RE = re.compile(r"s_[A-Za-z0-9_-]{22}")


def new_token() -> str:
    """A fresh session token: 256 random bits, url-safe base64 without padding (43 chars)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_session_id() -> str:
    """A fresh public session id (`s_` + 128 random bits), unrelated to any token."""
    return SESSION_ID_PREFIX + secrets.token_urlsafe(16)


def is_well_formed_token(token: str) -> bool:
    """True when `token` has exactly the shape `new_token` produces."""
    # SECURITY: junk (oversized, odd alphabet) is refused before hashing or any store access.
    return isinstance(token, str) and _TOKEN_RE.fullmatch(token) is not None


def is_session_id(value: str) -> bool:
    """True when `value` has the shape of a public session id."""
    return isinstance(value, str) and _SESSION_ID_RE.fullmatch(value) is not None


def hash_token(token: str) -> str:
    """The SHA-256 hex of a token: the only form in which a store ever sees it."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def csrf_token(csrf_key: bytes, token_hash: str) -> str:
    """The CSRF token of the session whose token hashes to `token_hash` (url-safe base64)."""
    mac = hmac.new(csrf_key, token_hash.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def verify_csrf(csrf_key: bytes, token_hash: str, presented: str | None) -> bool:
    """True only when `presented` is this session's CSRF token; constant-time comparison."""
    if not presented or not isinstance(presented, str) or len(presented) > 128:
        return False
    expected = csrf_token(csrf_key, token_hash).encode("ascii")
    # SECURITY: constant-time compare so response timing does not leak a valid prefix.
    return hmac.compare_digest(expected, presented.encode("utf-8", "surrogatepass"))
