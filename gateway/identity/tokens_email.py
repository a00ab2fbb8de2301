"""E-mail verification, password reset and password change.

Tokens are 256-bit random strings sent by mail; only their SHA-256 is stored, each is
single use (a compare-and-set in the store), expires (`RESET_TTL`, `VERIFY_TTL`) and is bound
to its purpose. A reset request answers the same whether or not the address is registered,
and mail leaves through a background queue, so its timing tells nothing either.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from typing import ClassVar, Final

from gateway.audit.events import ClockedEvents, RequestContext
from gateway.identity import apikeys
from gateway.identity.errors import IdentityError, InvalidInput, NotFound, PasswordRejected
from gateway.identity.models import User
from gateway.identity.passwords import PasswordHasher, PasswordPolicyError, check_password_policy
from gateway.identity.records import RESET, VERIFY, EmailToken, TokenPurpose
from gateway.identity.validation import normalize_email
from gateway.mail.sender import MailQueue
from gateway.storage.ports import IdentityStore

__all__ = ["RESET_TTL", "VERIFY_TTL", "AccountService", "TokenInvalid", "WrongPassword"]

RESET_TTL: Final = 30 * 60.0
VERIFY_TTL: Final = 24 * 3600.0
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")


def _redeemable(token: EmailToken, purpose: TokenPurpose, now: float) -> bool:
    return token.purpose == purpose and token.used_at is None and token.expires_at > now


class TokenInvalid(IdentityError):
    """Unknown, expired, used or for another purpose: one answer for all (400)."""

    code: ClassVar[str] = "token-invalid"
    status: ClassVar[int] = 400

    def __init__(self) -> None:
        super().__init__("this link is invalid, expired or already used")


class WrongPassword(IdentityError):
    """The current password given to a password change is wrong (403)."""

    code: ClassVar[str] = "invalid-credentials"
    status: ClassVar[int] = 403

    def __init__(self) -> None:
        super().__init__("the current password is not correct")


class AccountService(ClockedEvents):
    """Self-service account operations; every one is audited."""

    def __init__(
        self,
        store: IdentityStore,
        hasher: PasswordHasher,
        mail: MailQueue,
        link_base: str,
        clock: Callable[[], float] = time.time,
        *,
        reset_ttl: float = RESET_TTL,
        verify_ttl: float = VERIFY_TTL,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._mail = mail
        self._base = link_base.rstrip("/")
        self._clock = clock
        self._ttl = {RESET: reset_ttl, VERIFY: verify_ttl}

    async def request_reset(self, email: str, ctx: RequestContext) -> None:
        """Mails a reset link when the address has an account; silent either way."""
        try:
            credentials = await self._store.get_user_by_email(normalize_email(email))
        except InvalidInput:
            credentials = None
        if credentials is None:
            # SECURITY: enumeration; the same answer (and no mail) for unknown addresses.
            await self._store.append_audit(
                self._account_event("auth.password_reset_request", None, ctx)
            )
            return
        user = credentials.user
        token = await self._issue(user, RESET, "auth.password_reset_request", ctx)
        minutes = int(self._ttl[RESET] // 60)
        self._mail.submit(
            user.email,
            "Reset your password",
            f"Someone asked to reset the password of {user.email}.\n\n"
            f"To choose a new password, open this link within {minutes} minutes:\n"
            f"{self._base}/.gateway/reset/confirm?token={token}\n\n"
            "If it was not you, ignore this message; your password stays as it is.\n",
        )

    async def confirm_reset(self, token: str, password: str, ctx: RequestContext) -> User:
        """Sets a new password with a reset token; `TokenInvalid` or `PasswordRejected`."""
        _, user = await self._lookup(token, RESET, ctx)
        self._check_password(password, user.email)
        new_hash = await self._hasher.hash(password)
        event = self._account_event("auth.password_reset", user.id, ctx)
        redeemed = await self._store.redeem_email_token(
            apikeys.hash_secret(token), RESET, self._clock(), event, password_hash=new_hash
        )
        if redeemed is None:
            await self._failed("auth.password_reset", ctx)
            raise TokenInvalid()
        return user

    async def change_password(
        self, user_id: str, current: str, new: str, ctx: RequestContext
    ) -> User:
        """Replaces the password after checking the current one (`WrongPassword`)."""
        user = await self._store.get_user(user_id)
        credentials = await self._store.get_user_by_email(user.email) if user else None
        if credentials is None or credentials.user.id != user_id:
            raise NotFound("user")
        verified = await self._hasher.verify(credentials.password_hash, current)
        if not verified.ok:
            event = self._account_event("auth.password_change", user_id, ctx, outcome="failure")
            await self._store.append_audit(event)
            raise WrongPassword()
        self._check_password(new, credentials.user.email)
        new_hash = await self._hasher.hash(new)
        event = self._account_event("auth.password_change", user_id, ctx)
        await self._store.update_password_hash(user_id, new_hash, event)
        return credentials.user

    async def request_verification(self, user: User, ctx: RequestContext) -> None:
        """Mails a verification link to the user's address."""
        token = await self._issue(user, VERIFY, "auth.email_verify_request", ctx)
        self._mail.submit(
            user.email,
            "Confirm your email address",
            f"Please confirm that {user.email} is your address by opening this link:\n"
            f"{self._base}/.gateway/verify-email?token={token}\n\n"
            "If you did not create an account, ignore this message.\n",
        )

    async def verify_email(self, token: str, ctx: RequestContext) -> User:
        """Marks the address verified with a verification token; `TokenInvalid` otherwise."""
        _, user = await self._lookup(token, VERIFY, ctx)
        event = self._account_event("auth.email_verify", user.id, ctx)
        redeemed = await self._store.redeem_email_token(
            apikeys.hash_secret(token), VERIFY, self._clock(), event
        )
        if redeemed is None:
            await self._failed("auth.email_verify", ctx)
            raise TokenInvalid()
        return user

    async def _issue(
        self, user: User, purpose: TokenPurpose, action: str, ctx: RequestContext
    ) -> str:
        token = secrets.token_urlsafe(32)
        now = self._clock()
        record = EmailToken(user.id, purpose, user.email, now, now + self._ttl[purpose])
        event = self._account_event(action, user.id, ctx, {"expires_at": record.expires_at})
        await self._store.create_email_token(record, apikeys.hash_secret(token), event)
        return token

    async def _lookup(
        self, token: str, purpose: TokenPurpose, ctx: RequestContext
    ) -> tuple[EmailToken, User]:
        """The redeemable token and its user, else `TokenInvalid` (audited)."""
        action = "auth.password_reset" if purpose == RESET else "auth.email_verify"
        found = None
        if _TOKEN_RE.fullmatch(token):
            found = await self._store.get_email_token(apikeys.hash_secret(token))
        # SECURITY: single use, expiry and purpose are all checked (and again in the store).
        if found is not None and not _redeemable(found, purpose, self._clock()):
            found = None
        user = await self._store.get_user(found.user_id) if found else None
        if found is None or user is None:
            await self._failed(action, ctx)
            raise TokenInvalid()
        return found, user

    def _check_password(self, password: str, email: str) -> None:
        try:
            check_password_policy(password, email=email)
        except PasswordPolicyError as exc:
            raise PasswordRejected(exc.message) from None

    async def _failed(self, action: str, ctx: RequestContext) -> None:
        await self._store.append_audit(self._account_event(action, None, ctx, outcome="failure"))
