"""Rate-limit response fields: the IETF draft headers and the 429 problem document.

Form (draft-ietf-httpapi-ratelimit-headers-10, Structured Field Lists, RFC 9651):

    RateLimit-Policy: "api";q=20;w=2, "per-ip";q=100;w=10
    RateLimit: "api";r=0;t=1, "per-ip";r=99;t=1

Every applicable policy is listed, most restrictive first (limited before allowed, then
fewest remaining, then longest wait), so a client that reads only the first item sees the
binding one. `q` is the burst, `w` the whole seconds in which an idle bucket refills it,
`r` the requests left now, `t` the seconds until the request would pass (when limited) or
until the bucket is full again. No partition key (`pk`) is sent: keys may identify users.
On 429 `Retry-After` is at least every violated policy's `t` (and ≥ 1).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from typing import NamedTuple

from aiohttp import web

from gateway.ratelimit.gcra import RateResult

PROBLEM_TYPE = "https://iana.org/assignments/http-problem-types#quota-exceeded"
PROBLEM_CONTENT_TYPE = "application/problem+json"


class PolicyResult(NamedTuple):
    """A bucket's result under the policy `name` with quota `result.limit` per `window` s."""

    name: str
    window: int
    result: RateResult


@functools.lru_cache(maxsize=4096)
def sf_string(text: str) -> str:
    """`text` as a Structured Field String; characters outside printable ASCII become `?`."""
    chars = []
    for c in text:
        if c in '\\"':
            chars.append("\\" + c)
        elif " " <= c <= "~":
            chars.append(c)
        else:
            chars.append("?")
    return '"' + "".join(chars) + '"'


def seconds_to_refill(result: RateResult) -> int:
    """The `t` parameter: whole seconds until the request passes or the bucket is full."""
    return math.ceil(result.reset_after if result.allowed else result.retry_after)


def _binding_first(results: Sequence[PolicyResult]) -> list[PolicyResult]:
    return sorted(
        results,
        key=lambda p: (p.result.allowed, p.result.remaining, -seconds_to_refill(p.result)),
    )


def rate_headers(results: Sequence[PolicyResult]) -> list[tuple[str, str]]:
    """`RateLimit-Policy` and `RateLimit` for these results; none for no results."""
    if not results:
        return []
    ordered = results if len(results) == 1 else _binding_first(results)
    policy = ", ".join(map(_policy_item, ordered))
    return [("RateLimit-Policy", policy), ("RateLimit", ", ".join(map(_state_item, ordered)))]


def _policy_item(p: PolicyResult) -> str:
    return f"{sf_string(p.name)};q={p.result.limit};w={p.window}"


def _state_item(p: PolicyResult) -> str:
    return f"{sf_string(p.name)};r={max(0, p.result.remaining)};t={seconds_to_refill(p.result)}"


def retry_after(results: Sequence[PolicyResult]) -> int:
    """Whole seconds (≥ 1, ≥ every violated policy's `t`) before a retry can pass."""
    waits = [seconds_to_refill(p.result) for p in results if not p.result.allowed]
    return max([1, *waits])


def limited_headers(results: Sequence[PolicyResult]) -> list[tuple[str, str]]:
    """The headers of a 429: the rate headers plus `Retry-After` and `Cache-Control`."""
    return [
        *rate_headers(results),
        ("Retry-After", str(retry_after(results))),
        ("Cache-Control", "no-store"),
    ]


def problem_body(results: Sequence[PolicyResult]) -> dict[str, object]:
    """The RFC 9457 problem document of a 429, with the gateway's usual `error` member."""
    violated = [p.name for p in _binding_first(results) if not p.result.allowed]
    wait = retry_after(results)
    return {
        "type": PROBLEM_TYPE,
        "title": "Too Many Requests",
        "status": 429,
        "detail": f"rate limit exceeded; retry in {wait} s",
        "violated-policies": violated,
        "error": {"code": "rate-limited", "message": "too many requests"},
    }


def too_many_requests_response(results: Sequence[PolicyResult]) -> web.Response:
    """A complete 429: problem+json body, `Retry-After`, `RateLimit-Policy`, `RateLimit`."""
    resp = web.Response(
        status=429,
        text=json.dumps(problem_body(results)),
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for name, value in limited_headers(results):
        resp.headers[name] = value
    return resp
