"""`SecretValue`: a secret's plaintext that never prints itself.

Guarantees: `repr`, `str`, `format` and f-strings show `SecretValue('***')`; it cannot be
pickled or copied into a logging record by accident; equality is constant-time. The only
way to the plaintext is `reveal()` (text) or `encode()` (UTF-8 bytes), so every place that
handles plaintext is greppable.
"""

from __future__ import annotations

import hmac
from typing import NoReturn

MASK = "SecretValue('***')"
MAX_SECRET_BYTES = 32 * 1024
"""The largest value (UTF-8 encoded) a secret version may hold."""


class SecretValue:
    """A secret's plaintext (text); masked everywhere except `reveal()` and `encode()`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a secret value is text")
        self._value = value

    @classmethod
    def from_bytes(cls, raw: bytes) -> SecretValue:
        """Decodes UTF-8 plaintext (as stored); ValueError without echoing the bytes."""
        try:
            return cls(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ValueError("the secret value is not UTF-8 text") from None

    def reveal(self) -> str:
        """The plaintext. Call only where the value leaves to its rightful reader."""
        return self._value

    def encode(self) -> bytes:
        """The plaintext as UTF-8 bytes (what gets encrypted or MACed)."""
        return self._value.encode("utf-8")

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretValue):
            return NotImplemented
        return hmac.compare_digest(self.encode(), other.encode())

    def __hash__(self) -> int:
        return hash(MASK)

    def __reduce__(self) -> NoReturn:
        # SECURITY: pickling would write the plaintext wherever the pickle goes.
        raise TypeError("SecretValue cannot be serialized")
