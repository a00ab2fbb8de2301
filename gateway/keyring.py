"""Keys derived from the master key, one per purpose, so no key serves two roles."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive_key(master: bytes, purpose: str, length: int = 32) -> bytes:
    """HKDF-SHA256 of the master key for `purpose` (e.g. "csrf"); stable across restarts."""
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=None, info=f"gateway/{purpose}".encode()
    ).derive(master)
