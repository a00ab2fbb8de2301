"""The secret broker: who may resolve `secret://` references, and resolving them.

Guarantees:

* a caller is either the bearer of a valid `X-Gateway-Assertion` (EdDSA signature by a key of
  the gateway's own published ring, `kid` known, `iss` this gateway, `aud` a configured
  upstream or `forward-auth`, `exp`/`nbf`/`iat` present and current) or of a valid service
  account API key; anything else is unauthenticated;
* a caller resolves only references into its own tenant (another tenant answers 404 exactly
  like a missing secret), and only when Casbin allows `(sub, tenant, "secret:{name}", "read")`;
* every resolve, refused or not, is audited without the value.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.audit.events import Actor, AuditEvent, Outcome, RequestContext
from gateway.identity.signing_keys import KeyRing
from gateway.policy.engine import PolicyEngine
from gateway.secrets.envelope import EnvelopeError
from gateway.secrets.ports import ProviderError
from gateway.secrets.refs import RefError, parse_ref
from gateway.secrets.service import SecretError, SecretService
from gateway.secrets.values import SecretValue

LEEWAY = 5
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "tenant"]


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated resolver: subject, its tenant, its roles there, and its audit actor."""

    subject: str
    tenant_id: str
    tenant_slug: str
    roles: tuple[str, ...]
    actor: Actor
    via: str  # "assertion" or "api_key"


class AssertionVerifier:
    """Verifies assertions against the gateway's own published signing keys."""

    def __init__(
        self, ring: KeyRing, issuer: str, audiences: Iterable[str], leeway: float = LEEWAY
    ) -> None:
        self.ring = ring
        self.issuer = issuer
        self.audiences = sorted(set(audiences))
        self.leeway = leeway

    def verify(self, token: str) -> Caller | None:
        """The caller an assertion names, or None when anything about it is wrong."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = next((k for k in self.ring.published() if k.kid == kid), None)
            if key is None:
                return None
            # SECURITY: the algorithm is pinned: no `none`, no HMAC keyed with the public key.
            claims = jwt.decode(
                token, key.private.public_key(), algorithms=["EdDSA"], audience=self.audiences,
                issuer=self.issuer, leeway=self.leeway, options={"require": REQUIRED_CLAIMS},
            )  # fmt: skip
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        return caller_from_claims(claims)


def caller_from_claims(claims: dict[str, Any]) -> Caller | None:
    """The caller of verified claims, or None when they are not the assertion's shape."""
    tenant, roles, sub = claims.get("tenant"), claims.get("roles", []), claims.get("sub")
    if not isinstance(tenant, dict) or not isinstance(sub, str) or not sub:
        return None
    tid, slug = tenant.get("id"), tenant.get("slug")
    if not isinstance(tid, str) or not isinstance(slug, str) or not tid:
        return None
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        return None
    actor = Actor("user", sub) if claims.get("email") else Actor("service_account", sub)
    return Caller(sub, tid, slug, tuple(roles), actor, "assertion")


class Broker:
    """Resolves references for authenticated callers, deciding and auditing every call."""

    def __init__(
        self, service: SecretService, engine: PolicyEngine, clock: Callable[[], float] = time.time
    ) -> None:
        self.service = service
        self.engine = engine
        self.clock = clock

    async def resolve(
        self, caller: Caller, text: object, ctx: RequestContext
    ) -> tuple[SecretValue, int]:
        """(value, version) for the caller, or `SecretError`; audited either way."""
        details: dict[str, object] = {"via": caller.via}
        try:
            value, version = await self._resolve(caller, text, details)
        except SecretError as exc:
            await self._audit(caller, ctx, "failure", {**details, "reason": exc.code})
            raise
        await self._audit(caller, ctx, "success", {**details, "version": version})
        return value, version

    async def _resolve(
        self, caller: Caller, text: object, details: dict[str, object]
    ) -> tuple[SecretValue, int]:
        try:
            ref = parse_ref(text) if isinstance(text, str) else parse_ref("")
        except RefError as exc:
            raise SecretError(400, "bad-reference", str(exc)) from None
        details["ref"] = str(ref)
        # SECURITY: only the caller's own tenant; another one is indistinguishable from missing.
        if ref.tenant not in (caller.tenant_id, caller.tenant_slug):
            raise SecretError(404, "not-found", "secret not found")
        decision = await self.engine.authorize(
            caller.subject, caller.roles, caller.tenant_id, f"secret:{ref.name}", "read"
        )
        if not decision.allow:
            if "policy-error" in decision.reasons:
                raise SecretError(503, "policy-unavailable", "access denied")
            raise SecretError(403, "policy-deny", "access denied")
        try:
            found = await self.service.reveal(caller.tenant_id, ref.name, ref.version)
        except (ProviderError, EnvelopeError):
            raise SecretError(503, "secret-unavailable", "the secret cannot be opened") from None
        if found is None:
            raise SecretError(404, "not-found", "secret not found")
        return found

    async def _audit(
        self, caller: Caller, ctx: RequestContext, outcome: Outcome, details: dict[str, object]
    ) -> None:
        target = details.get("ref")
        await self.service.store.record(
            AuditEvent("secret.resolve", caller.actor, outcome, caller.tenant_id,
                       target if isinstance(target, str) else None, ctx, details)
        )  # fmt: skip

    async def refuse_anonymous(self, ctx: RequestContext, reason: str) -> None:
        """Audits a resolve attempt without valid credentials (platform chain)."""
        await self.service.store.record(
            AuditEvent("secret.resolve", Actor("anonymous"), "failure", None, None, ctx,
                       {"reason": reason})
        )  # fmt: skip
