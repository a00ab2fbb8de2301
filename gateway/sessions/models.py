"""The session record, the change-bus topics about sessions, and audit helpers.

A `SessionRecord` is immutable: every change (touch, revocation, rotation) produces a new
value, so a record handed to a request can never change under it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gateway.audit.events import Actor, AuditEvent, RequestContext

AuthMethod = Literal["password", "oidc"]

# Change-bus topics and their payloads.
SESSION_REVOKED = "session.revoked"  # {"ids": [public session ids]}
SESSIONS_CHANGED = "session.changed"  # {"ids": [...]}: re-read them (e.g. rotation pending)
USER_SESSIONS_REVOKED = "user.sessions_revoked"  # {"user_id": str}
TENANT_SESSIONS_REVOKED = "tenant.sessions_revoked"  # {"tenant_id": str}


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One session as stored. Times are Unix seconds.

    `id` is the public id (APIs, audit, the assertion's `sid`); `token_hash` is the SHA-256
    of the cookie value and never leaves the server (it is kept out of `repr`).
    `mfa_pending` marks a half-session that only the MFA step accepts. `mfa_at` is when a
    code (TOTP or recovery) was last proven on this session (None: never); step-up for admin
    actions judges its age.
    """

    id: str
    token_hash: str = dataclasses.field(repr=False)
    user_id: str
    tenant_id: str
    created_at: float
    last_seen_at: float
    expires_at: float
    idle_timeout: int
    auth_method: AuthMethod = "password"
    mfa: bool = False
    mfa_pending: bool = False
    ip: str | None = None
    user_agent: str | None = None
    revoked_at: float | None = None
    rotate_pending: bool = False
    mfa_at: float | None = None

    @property
    def idle_expires_at(self) -> float:
        """When the session dies if it is not used again (never later than `expires_at`)."""
        return min(self.last_seen_at + self.idle_timeout, self.expires_at)

    def is_valid(self, now: float) -> bool:
        """True when not revoked and neither the absolute nor the idle deadline has passed."""
        if self.revoked_at is not None:
            return False
        return now < self.expires_at and now < self.last_seen_at + self.idle_timeout

    def mfa_recent(self, now: float, max_age: float) -> bool:
        """True when a code was proven on this session less than `max_age` seconds before
        `now`. A time slightly ahead of `now` (another replica's clock) counts as recent."""
        return self.mfa_at is not None and now - self.mfa_at < max_age

    def public_view(self) -> dict[str, Any]:
        """The contract's `session` object of `GET /.gateway/auth/session`."""
        return {
            "id": self.id,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "idle_expires_at": self.idle_expires_at,
            "auth_method": self.auth_method,
            "mfa": self.mfa,
        }


def with_session_ids(event: AuditEvent, ids: Sequence[str]) -> AuditEvent:
    """`event` with the revoked public session ids added to its details (never tokens)."""
    return dataclasses.replace(event, details={**event.details, "session_ids": list(ids)})


def session_event(
    ts: float,
    action: str,
    actor: Actor,
    ctx: RequestContext,
    tenant_id: str | None,
    target: str,
    details: dict[str, Any],
) -> AuditEvent:
    """An audit event about sessions; details that are None are left out."""
    kept = {k: v for k, v in details.items() if v is not None}
    return AuditEvent(
        action=action, actor=actor, tenant_id=tenant_id, target=target, context=ctx,
        details=kept, ts=ts,
    )  # fmt: skip
