"""Errors of the identity service, each carrying the contract's error `code` and HTTP `status`.

The web layer renders any `IdentityError` as `{"error": {"code": e.code, "message": e.message}}`
with `e.status`. Messages are user-facing sentences and never contain a password, a token or
an API key. Sign-in does not raise these: every sign-in failure is the same `None`.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "Conflict",
    "IdentityError",
    "InvalidInput",
    "InvitationInvalid",
    "NotFound",
    "PasswordRejected",
]


class IdentityError(Exception):
    """Base class: a refused identity operation with a stable `code` and an HTTP `status`."""

    code: ClassVar[str] = "identity-error"
    status: ClassVar[int] = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(IdentityError):
    """A field failed validation (422). `field` names it (`email`, `tenant`, `roles`, ...)."""

    code = "invalid-input"
    status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class PasswordRejected(IdentityError):
    """The password policy refused a new password (422); the message comes from the policy."""

    code = "password-rejected"
    status = 422


_CONFLICT_MESSAGES = {
    "email": "an account with this email address already exists",
    "tenant": "a tenant with this name already exists",
    "membership": "the user is already a member of this tenant",
    "service_account": "a service account with this name already exists in this tenant",
    "invitation": "the invitation has already been used",
}


class Conflict(IdentityError):
    """A uniqueness rule enforced by the store was hit (409). `field` names the rule."""

    code = "conflict"
    status = 409

    def __init__(self, field: str) -> None:
        super().__init__(_CONFLICT_MESSAGES.get(field, f"{field} already exists"))
        self.field = field


class NotFound(IdentityError):
    """The object does not exist in the given tenant (404); another tenant's object is
    indistinguishable from a missing one. `what` names the kind of object."""

    code = "not-found"
    status = 404

    def __init__(self, what: str) -> None:
        super().__init__(f"{what.replace('_', ' ')} not found")
        self.what = what


class InvitationInvalid(IdentityError):
    """The invitation token is unknown, expired, already used or for another email (400).

    One status and one message for every case: the token is the only credential, so the
    response says nothing more than "this token does not let you in". 400 rather than 410
    because an unknown token was never "gone" and we do not tell the cases apart.
    """

    code = "invitation-invalid"
    status = 400

    def __init__(self) -> None:
        super().__init__(
            "this invitation is unknown, expired, already used, or for another email address"
        )
