"""The audit event: one append-only record of something that happened.

Events are built above the storage ports and handed to the store method that performs the
change, which writes both in one transaction: a change whose event cannot be written does
not happen. `details` never holds secrets (passwords, tokens, keys, secret values).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ActorType = Literal["user", "service_account", "operator", "system", "anonymous"]
Outcome = Literal["success", "failure"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it."""

    type: ActorType
    id: str | None = None


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Where it came from: the request's address, user agent and id (empty for the CLI)."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


CLI_CONTEXT = RequestContext(ip=None, user_agent="gateway-cli", request_id=None)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One event in the contract's shape (`prev_hash`/`hash` are set when it is stored)."""

    action: str
    actor: Actor
    outcome: Outcome = "success"
    tenant_id: str | None = None
    target: str | None = None
    context: RequestContext = field(default_factory=RequestContext)
    details: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ts: float = field(default_factory=time.time)

    def as_record(self) -> dict[str, Any]:
        """The JSON-ready shape of the contract (without the chain fields)."""
        return {
            "id": self.id,
            "ts": self.ts,
            "tenant_id": self.tenant_id,
            "actor": {"type": self.actor.type, "id": self.actor.id},
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "ip": self.context.ip,
            "user_agent": self.context.user_agent,
            "request_id": self.context.request_id,
            "details": self.details,
        }


ANONYMOUS = Actor("anonymous")


class ClockedEvents:
    """Mixin for a service with a `_clock`: its audit events, stamped with that clock."""

    _clock: Callable[[], float]

    def _event(
        self,
        action: str,
        actor: Actor,
        ctx: RequestContext,
        tenant_id: str | None,
        target: str | None = None,
        details: Mapping[str, Any] | None = None,
        outcome: Outcome = "success",
    ) -> AuditEvent:
        """An event stamped with the service clock (`details` must hold no secrets)."""
        return AuditEvent(
            action, actor, outcome, tenant_id, target, ctx, dict(details or {}), ts=self._clock()
        )

    def _account_event(
        self,
        action: str,
        user_id: str | None,
        ctx: RequestContext,
        details: Mapping[str, Any] | None = None,
        outcome: Outcome = "success",
    ) -> AuditEvent:
        """An event about a user's own account: the user acts on themself (anonymous when no
        user is known); no tenant."""
        actor = Actor("user", user_id) if user_id else ANONYMOUS
        return self._event(action, actor, ctx, None, user_id, details, outcome)
