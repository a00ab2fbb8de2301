"""TOTP multi-factor authentication: enrolment, confirmation, verification, recovery codes.

* The base32 TOTP secret is sealed with AES-256-GCM under a key derived from the master key
  (`derive_key(master, "mfa")`), bound to the user id as associated data, so a ciphertext
  copied onto another user does not open. It appears in one response only (enrolment).
* pyotp has no replay protection: the store keeps the last accepted time step and accepts a
  code only for a later step (compare-and-set), so every code works once.
* Ten recovery codes of 80 random bits each, stored as SHA-256 over the user id and the code:
  a fast hash is enough for 80-bit secrets (see `apikeys`), and it allows a single-use
  compare-and-set by hash. Each works once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Final, Literal

import pyotp
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.audit.events import ClockedEvents, RequestContext
from gateway.identity.errors import Conflict, IdentityError
from gateway.identity.models import User
from gateway.identity.records import MfaRecord
from gateway.storage.ports import IdentityStore

__all__ = [
    "RECOVERY_CODES",
    "Enrollment",
    "MfaAlreadyEnabled",
    "MfaCodeInvalid",
    "MfaNotEnrolled",
    "MfaService",
    "SecretBox",
    "qr_svg",
]

STEP: Final = 30
RECOVERY_CODES: Final = 10
_TOTP_RE = re.compile(r"\d{6}")
_SEALED_PREFIX = "v1:"
MfaMethod = Literal["totp", "recovery"]


class MfaCodeInvalid(IdentityError):
    """The code is wrong, expired, already used, or MFA is not on (one answer for all)."""

    code: ClassVar[str] = "invalid-code"
    status: ClassVar[int] = 401

    def __init__(self) -> None:
        super().__init__("the code is not valid")


class MfaNotEnrolled(IdentityError):
    """Confirmation without a pending enrolment."""

    code: ClassVar[str] = "mfa-not-enrolled"
    status: ClassVar[int] = 409

    def __init__(self) -> None:
        super().__init__("start an MFA enrolment first")


class MfaAlreadyEnabled(IdentityError):
    """Enrolment while MFA is already on (disable it first)."""

    code: ClassVar[str] = "mfa-enabled"
    status: ClassVar[int] = 409

    def __init__(self) -> None:
        super().__init__("MFA is already on; disable it before enrolling again")


class SecretBox:
    """AES-256-GCM sealing of TOTP secrets, bound to their user id."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the MFA key must be 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, user_id: str, secret: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), user_id.encode())
        return _SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, user_id: str, ciphertext: str) -> str | None:
        """The secret, or None when the ciphertext is damaged or belongs to another user."""
        if not ciphertext.startswith(_SEALED_PREFIX):
            return None
        try:
            raw = base64.urlsafe_b64decode(ciphertext.removeprefix(_SEALED_PREFIX))
            return self._aead.decrypt(raw[:12], raw[12:], user_id.encode()).decode()
        except (ValueError, InvalidTag):
            return None


def time_step(now: float) -> int:
    """The TOTP time step (30 s) of `now`."""
    return int(now // STEP)


def matching_step(secret: str, code: str, now: float, after: int) -> int | None:
    """The step in now ± 1 whose code is `code` and which is later than `after`, else None."""
    if not _TOTP_RE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    current = time_step(now)
    for step in (current - 1, current, current + 1):
        # SECURITY: replay; a step at or before the last accepted one never matches again.
        if step > after and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_code() -> str:
    """`xxxx-xxxx-xxxx-xxxx`: 16 base32 characters, 80 random bits."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def recovery_hash(user_id: str, code: str) -> str:
    """SHA-256 (hex) of the user id and the code without separators or letter case."""
    normalized = re.sub(r"[\s-]", "", code).lower()[:64]
    return hashlib.sha256(f"{user_id}:{normalized}".encode()).hexdigest()


def qr_svg(uri: str) -> str:
    """The `otpauth://` URI as an inline SVG QR code (no scripts, no external resources)."""
    return str(segno.make(uri, error="m").svg_inline(scale=4, omitsize=False))


@dataclass(frozen=True, slots=True)
class Enrollment:
    """What the user needs once: the secret, its URI (for the QR code) and recovery codes."""

    secret: str = field(repr=False)
    otpauth_uri: str = field(repr=False)
    recovery_codes: tuple[str, ...] = field(repr=False)


class MfaService(ClockedEvents):
    """TOTP MFA over the identity store; every change and every check is audited."""

    def __init__(
        self,
        store: IdentityStore,
        key: bytes,
        clock: Callable[[], float] = time.time,
        issuer: str = "gateway",
    ) -> None:
        self._store = store
        self._box = SecretBox(key)
        self._clock = clock
        self._issuer = issuer

    async def is_enabled(self, user_id: str) -> bool:
        record = await self._store.get_mfa(user_id)
        return record is not None and record.enabled

    async def recovery_codes_left(self, user_id: str) -> int:
        return await self._store.count_recovery_codes(user_id)

    async def enroll(self, user: User, ctx: RequestContext) -> Enrollment:
        """A new secret and recovery codes; MFA stays off until `confirm`."""
        secret = pyotp.random_base32()
        codes = tuple(new_recovery_code() for _ in range(RECOVERY_CODES))
        now = self._clock()
        record = MfaRecord(user.id, self._box.seal(user.id, secret), now)
        hashes = tuple(recovery_hash(user.id, c) for c in codes)
        try:
            await self._store.put_mfa_enrollment(
                record, hashes, self._account_event("mfa.enroll", user.id, ctx)
            )
        except Conflict:
            raise MfaAlreadyEnabled() from None
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=self._issuer)
        return Enrollment(secret, uri, codes)

    async def confirm(self, user_id: str, code: str, ctx: RequestContext) -> None:
        """Turns MFA on with a first valid code; `MfaNotEnrolled` or `MfaCodeInvalid`."""
        record = await self._store.get_mfa(user_id)
        if record is None or record.enabled:
            raise MfaNotEnrolled()
        step = self._step(record, code)
        event = self._account_event("mfa.enable", user_id, ctx)
        if step is None or not await self._store.enable_mfa(user_id, self._clock(), step, event):
            await self._failed("mfa.enable", user_id, ctx)
            raise MfaCodeInvalid()

    async def verify(
        self, user_id: str, code: str, ctx: RequestContext, *, step_up: bool = False
    ) -> MfaMethod:
        """Accepts a TOTP code or a recovery code once; `MfaCodeInvalid` otherwise.

        `step_up`: the code re-verifies a full session (for admin actions) rather than
        completing a sign-in; the audit event (`auth.mfa`) says so (`purpose: step-up`).
        Replay protection is the same either way.
        """
        extra = {"purpose": "step-up"} if step_up else {}
        method = await self._use(user_id, code, "auth.mfa", ctx, extra)
        if method is None:
            await self._failed("auth.mfa", user_id, ctx, extra)
            raise MfaCodeInvalid()
        return method

    async def disable(self, user_id: str, code: str, ctx: RequestContext) -> None:
        """Turns MFA off; it takes a current code (TOTP or recovery), else `MfaCodeInvalid`."""
        if await self._use(user_id, code, "mfa.verify", ctx) is None:
            await self._failed("mfa.disable", user_id, ctx)
            raise MfaCodeInvalid()
        await self._store.delete_mfa(user_id, self._account_event("mfa.disable", user_id, ctx))

    async def _use(
        self,
        user_id: str,
        code: str,
        action: str,
        ctx: RequestContext,
        extra: dict[str, str] | None = None,
    ) -> MfaMethod | None:
        record = await self._store.get_mfa(user_id)
        if record is None or not record.enabled or len(code) > 64:
            return None
        code = code.strip()
        if _TOTP_RE.fullmatch(code):
            step = self._step(record, code)
            event = self._account_event(action, user_id, ctx, {"method": "totp", **(extra or {})})
            if step is not None and await self._store.use_totp_step(user_id, step, event):
                return "totp"
            return None
        event = self._account_event(action, user_id, ctx, {"method": "recovery", **(extra or {})})
        hashed = recovery_hash(user_id, code)
        if await self._store.use_recovery_code(user_id, hashed, self._clock(), event):
            return "recovery"
        return None

    def _step(self, record: MfaRecord, code: str) -> int | None:
        secret = self._box.open(record.user_id, record.secret_ciphertext)
        if secret is None:
            return None
        return matching_step(secret, code.strip(), self._clock(), record.last_step)

    async def _failed(
        self,
        action: str,
        user_id: str,
        ctx: RequestContext,
        details: dict[str, str] | None = None,
    ) -> None:
        event = self._account_event(action, user_id, ctx, details, outcome="failure")
        await self._store.append_audit(event)
