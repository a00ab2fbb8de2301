"""The closed vocabulary of denial reasons and the decision values stages return.

Every stage that refuses a request returns a `Deny` carrying one `Reason`. The same
kebab-case names appear in responses, logs, metrics and audit records, so an operator can
follow one refusal from the client's error body to the metric that counted it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Reason(enum.StrEnum):
    """Why a request was refused; the value is the public, kebab-case code."""

    BAD_REQUEST = "bad-request"
    UNTRUSTED_PROXY = "untrusted-proxy"
    BAD_FRAMING = "bad-framing"
    BAD_PATH = "bad-path"
    HEADERS_TOO_LARGE = "headers-too-large"
    BODY_TOO_LARGE = "body-too-large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported-media-type"
    UPGRADE_REFUSED = "upgrade-refused"
    ROUTE_UNKNOWN = "route-unknown"
    TENANT_UNKNOWN = "tenant-unknown"
    TENANT_CONFLICT = "tenant-conflict"
    NOT_A_MEMBER = "not-a-member"
    FEATURE_DISABLED = "feature-disabled"
    UNAUTHENTICATED = "unauthenticated"
    SESSION_EXPIRED = "session-expired"
    CSRF = "csrf"
    POLICY_DENY = "policy-deny"
    RATE_LIMITED = "rate-limited"
    STORE_UNAVAILABLE = "store-unavailable"
    POLICY_UNAVAILABLE = "policy-unavailable"
    NOT_IMPLEMENTED = "not-implemented"
    UPSTREAM_UNREACHABLE = "upstream-unreachable"
    UPSTREAM_TIMEOUT = "upstream-timeout"
    INTERNAL = "internal-error"


@dataclass(frozen=True, slots=True)
class Deny:
    """A stage's refusal: the reason, a safe human message, and optional response headers.

    `message` is shown to the client, so it never carries secrets or internal detail.
    """

    reason: Reason
    message: str = ""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """An authorization decision with the rule that made it, for explain and audit."""

    allow: bool
    reasons: tuple[str, ...] = ()
    matched_rule: tuple[str, ...] | None = None
    policy_version: int = 0
