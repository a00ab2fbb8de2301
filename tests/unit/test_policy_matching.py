"""pathMatch and actMatch: rule objects are literal except the documented wildcards."""

from __future__ import annotations

import pytest

from gateway.policy.matching import act_match, path_match


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("/api/v1.0/x", "/api/v1.0/*", True),
        ("/api/v1x0/x", "/api/v1.0/*", False),
        ("/a+b", "/a+b", True),
        ("/aab", "/a+b", False),
        ("/a", "/a?", False),
        ("/ab", "/(a|b)", False),
        ("/(a|b)", "/(a|b)", True),
        ("/x/[0-9]", "/x/[0-9]", True),
        ("/x/5", "/x/[0-9]", False),
        ("/v1/items:batchGet", "/v1/items:batchGet", True),
        ("/v1/items:other", "/v1/items:batchGet", False),
        ("/admin", "/admin/*", True),
        ("/admin/", "/admin/*", True),
        ("/admin/a/b", "/admin/*", True),
        ("/administrator", "/admin/*", False),
        ("/administrator", "/admin*", True),
        ("/users/42", "/users/:id", True),
        ("/users/42/x", "/users/:id", False),
        ("/users/", "/users/:id", False),
        ("/users/42/posts", "/users/{id}/posts", True),
        ("/anything/at/all", "/*", True),
        ("/", "/*", True),
        ("/.gateway/admin/x", "/*", False),
        ("/.gateway", "/*", False),
        ("/.gateway/admin/x", "/.gateway/admin/*", True),
        ("/.gatewayx", "/*", True),
        ("/a\n", "/a", False),
        ("/a/b", "/a", False),
        ("secret:db", "secret:db", True),
        ("secret:db2", "secret:db", False),
        ("secret:db2", "/*", False),
    ],
)
def test_path_match_is_literal_except_wildcards(path: str, pattern: str, expected: bool) -> None:
    assert path_match(path, pattern) is expected


@pytest.mark.parametrize(
    ("act", "pattern", "expected"),
    [
        ("GET", "*", True),
        ("GET", "GET", True),
        ("get", "GET", False),
        ("HEAD", "GET|HEAD", True),
        ("POST", "GET|HEAD", False),
        ("GET|HEAD", "GET|HEAD", True),  # exact equality; methods never contain "|"
        ("ET", "GET", False),
        ("read", "read", True),
    ],
)
def test_act_match(act: str, pattern: str, expected: bool) -> None:
    assert act_match(act, pattern) is expected
