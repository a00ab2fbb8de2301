"""Counting the gateway's decision on each proxied request, with label children bound once.

Guarantees: every proxied request that reaches a decision is counted exactly once in
`gateway_authz_decisions_total` (allow: reason `public` or `policy`; deny: its `Reason`),
and a rate-limit refusal is also counted in `gateway_ratelimit_limited_requests_total`.
Counting is a dict lookup and a tallied increment (`tally`): no label resolution, no lock.
"""

from __future__ import annotations

from gateway.observability.metrics import AUTHZ_DECISIONS, RATE_LIMITED
from gateway.observability.tally import counter_tally
from gateway.pipeline.reasons import Reason


class DecisionCounters:
    """The decision counters of the proxy (and of forward-auth, which makes the same call)."""

    def __init__(self) -> None:
        self._deny = {
            reason: counter_tally(AUTHZ_DECISIONS.labels("deny", reason.value)) for reason in Reason
        }
        self._public = counter_tally(AUTHZ_DECISIONS.labels("allow", "public"))
        self._policy = counter_tally(AUTHZ_DECISIONS.labels("allow", "policy"))
        self._limited = counter_tally(RATE_LIMITED.labels("proxy"))

    def allowed(self, public: bool) -> None:
        """Counts an allowed request (public path, or the policy allowed it)."""
        (self._public if public else self._policy).inc()

    def denied(self, reason: Reason) -> None:
        """Counts a refused request by its reason."""
        self._deny[reason].inc()
        if reason is Reason.RATE_LIMITED:
            self._limited.inc()


DECISIONS = DecisionCounters()
AUTH_RATE_LIMITED = RATE_LIMITED.labels("auth")
"""For the credential endpoints' limiter: `AUTH_RATE_LIMITED.inc()` on each 429 it sends."""
