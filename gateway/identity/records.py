"""Identity records of issue 13: a user's TOTP enrolment and the e-mailed one-time tokens.

Immutable values, like `gateway.identity.models`. Secret-bearing fields (the encrypted TOTP
secret) are kept out of `repr`; tokens and recovery codes are never held here, only hashes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = ["RESET", "VERIFY", "EmailToken", "MfaRecord", "TokenPurpose"]

TokenPurpose = Literal["verify", "reset"]
VERIFY: Final = "verify"
RESET: Final = "reset"


@dataclass(frozen=True, slots=True)
class MfaRecord:
    """A user's TOTP enrolment: `enabled_at` is None until the first code confirmed it.

    `secret_ciphertext` is the AES-GCM sealed base32 secret (see `gateway.identity.mfa`);
    `last_step` is the last accepted TOTP time step (codes at or below it are replays).
    """

    user_id: str
    secret_ciphertext: str = field(repr=False)
    created_at: float
    enabled_at: float | None = None
    last_step: int = -1

    @property
    def enabled(self) -> bool:
        return self.enabled_at is not None


@dataclass(frozen=True, slots=True)
class EmailToken:
    """A single-use token sent by e-mail (verification or password reset); only its SHA-256
    is stored. `email` is the address it was sent to (a verification proves that one)."""

    user_id: str
    purpose: TokenPurpose
    email: str
    created_at: float
    expires_at: float
    used_at: float | None = None
