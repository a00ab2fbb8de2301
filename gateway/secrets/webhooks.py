"""Webhook signature verification with a tenant's signing secret.

Scheme `hmac-sha256`: the signature header is `t=<unix seconds>,v1=<hex>` (several `v1=`
allowed, for a sender rotating its secret), where `hex = HMAC-SHA256(secret, "<t>." + body)`.

Guarantees: comparison is constant-time; a timestamp more than `tolerance` seconds away from
now is refused (stale); a signature accepted once is refused again until it has gone stale
(replay window, shared by every replica through the store); the secret is revealed only to
compute the MAC, and no outcome, audit detail or error carries it or the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.audit.events import Actor, Outcome, RequestContext
from gateway.config.routes import WebhookVerification
from gateway.identity.models import Tenant
from gateway.secrets.envelope import EnvelopeError
from gateway.secrets.ports import ProviderError
from gateway.secrets.service import SecretService, event
from gateway.secrets.values import SecretValue

_PART = re.compile(r"\s*(t|v1)=([0-9a-fA-F]+)\s*")
MAX_HEADER = 1024
SENDER = Actor("anonymous", None)


def signature(secret: SecretValue, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `"<timestamp>." + body` under the secret."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def header_value(secret: SecretValue, timestamp: int, body: bytes) -> str:
    """The header a sender attaches (what tests and senders build)."""
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def parse_header(value: str) -> tuple[int, list[str]] | None:
    """(timestamp, candidate signatures) of a well-formed header, else None."""
    if len(value) > MAX_HEADER:
        return None
    timestamp, signatures = None, []
    for part in value.split(","):
        match = _PART.fullmatch(part)
        if match is None:
            return None
        if match.group(1) == "t":
            if timestamp is not None or len(match.group(2)) > 12 or not match.group(2).isdigit():
                return None
            timestamp = int(match.group(2))
        else:
            signatures.append(match.group(2).lower())
    return (timestamp, signatures) if timestamp is not None and signatures else None


def check(
    secret: SecretValue, header: str | None, body: bytes, now: float, tolerance: int
) -> tuple[str, str | None]:
    """("ok", matched signature) or (reason, None): missing, malformed, stale, mismatch."""
    if not header:
        return "missing", None
    parsed = parse_header(header)
    if parsed is None:
        return "malformed", None
    timestamp, candidates = parsed
    if abs(now - timestamp) > tolerance:
        return "stale", None
    expected = signature(secret, timestamp, body)
    matched = None
    for candidate in candidates:  # every candidate is compared: no early exit on a match
        if hmac.compare_digest(candidate, expected):
            matched = candidate
    return ("ok", matched) if matched else ("mismatch", None)


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """What the stage hands over: route, tenant claim, header, body and request context."""

    route: str
    tenant_ref: str | None
    header: str | None
    body: bytes
    ctx: RequestContext


class WebhookVerifier:
    """Verifies one webhook request against its tenant's secret, audits the outcome."""

    def __init__(
        self,
        service: SecretService,
        find_tenant: Callable[[str], Awaitable[Tenant | None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.find_tenant = find_tenant
        self.clock = clock

    async def verify(self, spec: WebhookVerification, req: WebhookRequest) -> str:
        """ "ok" when the request is authentic and fresh; else the refusal reason (audited)."""
        ref = spec.tenant or req.tenant_ref
        tenant = await self.find_tenant(ref) if ref else None
        if tenant is None:
            return "no-tenant"  # nothing to audit against: no tenant chain to write to
        reason = await self._check(tenant.id, spec, req)
        details: dict[str, object] = {"route": req.route, "secret": spec.secret, "reason": reason}
        outcome: Outcome = "success" if reason == "ok" else "failure"
        audit = event("webhook.verify", SENDER, req.ctx, tenant.id, req.route, details, outcome)
        await self.service.store.record(audit)
        return reason

    async def _check(self, tenant_id: str, spec: WebhookVerification, req: WebhookRequest) -> str:
        try:
            found = await self.service.reveal(tenant_id, spec.secret, None)
        except (ProviderError, EnvelopeError):
            return "secret-unavailable"
        if found is None:
            return "no-secret"
        now = self.clock()
        reason, matched = check(found[0], req.header, req.body, now, spec.tolerance)
        if matched is None:
            return reason
        key = hashlib.sha256(f"{tenant_id}|{req.route}|{matched}".encode()).hexdigest()
        parsed = parse_header(req.header or "")
        expires = (parsed[0] if parsed else now) + spec.tolerance
        # SECURITY: a captured request replayed within the window is refused on every replica.
        if not await self.service.store.first_use(f"webhook:{key}", expires, now):
            return "replayed"
        return "ok"
