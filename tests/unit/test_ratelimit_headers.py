"""The exact header and problem+json forms of rate-limit responses."""

from __future__ import annotations

import json

from gateway.ratelimit.gcra import RateResult
from gateway.ratelimit.headers import (
    PolicyResult,
    limited_headers,
    problem_body,
    rate_headers,
    retry_after,
    sf_string,
    too_many_requests_response,
)

ALLOWED = PolicyResult("per-ip", 10, RateResult(True, 100, 99, 0.0, 0.1))
TIGHT = PolicyResult("api", 2, RateResult(True, 20, 3, 0.0, 1.7))
LIMITED = PolicyResult("api", 2, RateResult(False, 20, 0, 0.25, 2.0))


def test_allowed_headers_list_every_policy_binding_first() -> None:
    assert rate_headers([ALLOWED, TIGHT]) == [
        ("RateLimit-Policy", '"api";q=20;w=2, "per-ip";q=100;w=10'),
        ("RateLimit", '"api";r=3;t=2, "per-ip";r=99;t=1'),
    ]


def test_limited_headers_put_the_violated_policy_first_with_its_wait() -> None:
    assert limited_headers([ALLOWED, LIMITED]) == [
        ("RateLimit-Policy", '"api";q=20;w=2, "per-ip";q=100;w=10'),
        ("RateLimit", '"api";r=0;t=1, "per-ip";r=99;t=1'),
        ("Retry-After", "1"),
        ("Cache-Control", "no-store"),
    ]


def test_retry_after_is_whole_seconds_at_least_every_violated_t() -> None:
    long_wait = PolicyResult("day", 86400, RateResult(False, 5, 0, 3600.2, 9000.0))
    assert retry_after([LIMITED, long_wait]) == 3601
    assert retry_after([ALLOWED]) == 1


def test_no_results_no_headers() -> None:
    assert rate_headers([]) == []


def test_names_are_escaped_structured_field_strings() -> None:
    assert sf_string('a"b\\c') == '"a\\"b\\\\c"'
    assert sf_string("é\n") == '"??"'


def test_the_429_is_a_problem_document_with_the_usual_error_member() -> None:
    resp = too_many_requests_response([ALLOWED, LIMITED])
    assert resp.status == 429
    assert resp.content_type == "application/problem+json"
    assert resp.headers["Retry-After"] == "1"
    assert resp.headers["RateLimit"].startswith('"api";r=0;t=1')
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.text is not None
    assert json.loads(resp.text) == problem_body([ALLOWED, LIMITED])
    assert problem_body([ALLOWED, LIMITED]) == {
        "type": "https://iana.org/assignments/http-problem-types#quota-exceeded",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "rate limit exceeded; retry in 1 s",
        "violated-policies": ["api"],
        "error": {"code": "rate-limited", "message": "too many requests"},
    }
