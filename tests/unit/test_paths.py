"""Concrete cases for the request-path normalizer and the public-path pattern matcher."""

from __future__ import annotations

import pytest

from gateway.pipeline.paths import (
    REJECT_REASONS,
    PathPattern,
    PathRejected,
    compile_pattern,
    normalize_path,
    path_matches,
)

ACCEPTED: list[tuple[str, str]] = [
    # already canonical
    ("/", "/"),
    ("/admin", "/admin"),
    ("/admin/", "/admin/"),
    ("/a/b/", "/a/b/"),
    ("/.well-known/jwks.json", "/.well-known/jwks.json"),
    ("/a/.../b", "/a/.../b"),
    ("/a/..b/.c", "/a/..b/.c"),
    ("/a-b_c~d/x.y", "/a-b_c~d/x.y"),
    ("/sub!$&'()*+,=:@delims", "/sub!$&'()*+,=:@delims"),
    # repeated slashes
    ("//admin", "/admin"),
    ("/a//b", "/a/b"),
    ("///", "/"),
    ("/a//b//", "/a/b/"),
    # dot segments
    ("/.", "/"),
    ("/./", "/"),
    ("/a/./b", "/a/b"),
    ("/a/./", "/a/"),
    ("/a/.", "/a/"),
    ("/a/b/../c", "/a/c"),
    ("/a/..", "/"),
    ("/a/../", "/"),
    ("/a/b/..", "/a/"),
    ("/a/b/../../c/", "/c/"),
    ("/a//..", "/"),
    # encoded dot segments
    ("/a/%2e%2e/b", "/b"),
    ("/a/%2E%2E/b", "/b"),
    ("/a/.%2E/b", "/b"),
    ("/a/%2e./b", "/b"),
    ("/a/%2e/b", "/a/b"),
    ("/a/.%2e%2e", "/a/..."),
    # unreserved escapes are decoded, others kept upper-case
    ("/%61dmin", "/admin"),
    ("/%41%42%43", "/ABC"),
    ("/%7euser", "/~user"),
    ("/%2D%2E%5F%7E", "/-._~"),
    ("/%C3%A9", "/%C3%A9"),
    ("/%c3%a9", "/%C3%A9"),
    ("/caf%c3%a9/", "/caf%C3%A9/"),
    ("/%F0%9F%98%80", "/%F0%9F%98%80"),
    ("/a%20b", "/a%20b"),
    ("/%21%3a%40", "/%21%3A%40"),
    ("/q%3fx", "/q%3Fx"),
    ("/100%25", "/100%25"),
    ("/%25zz", "/%25zz"),
    ("/%25/x", "/%25/x"),
    # raw characters not allowed in a path are encoded to their one canonical spelling
    ("/a|b", "/a%7Cb"),
    ('/a"b', "/a%22b"),
    ("/<x>", "/%3Cx%3E"),
    ("/[v6]", "/%5Bv6%5D"),
    ("/{a}^`", "/%7Ba%7D%5E%60"),
    ("/a#frag", "/a%23frag"),
    # letters that fold harmlessly under NFKC are fine
    ("/%EF%AC%81le", "/%EF%AC%81le"),  # U+FB01 LATIN SMALL LIGATURE FI
    ("/%E2%80%A6", "/%E2%80%A6"),  # U+2026 HORIZONTAL ELLIPSIS folds to "..." (not a dot segment)
]

REJECTED: list[tuple[str, str]] = [
    # not absolute
    ("", "not-absolute"),
    ("a/b", "not-absolute"),
    ("*", "not-absolute"),
    ("http://evil.example/admin", "not-absolute"),
    ("%2Fadmin", "not-absolute"),
    # dot segments escaping the root
    ("/..", "dot-segment-escape"),
    ("/../x", "dot-segment-escape"),
    ("/%2e%2e/x", "dot-segment-escape"),
    ("/.%2E/", "dot-segment-escape"),
    ("/a/../../x", "dot-segment-escape"),
    ("/a/b/../../..", "dot-segment-escape"),
    ("/./..", "dot-segment-escape"),
    # encoded slash and backslash
    ("/a%2fb", "encoded-slash"),
    ("/a%2Fb", "encoded-slash"),
    ("/public/..%2fadmin", "encoded-slash"),
    ("/a%5cb", "backslash"),
    ("/a%5Cb", "backslash"),
    ("/a\\b", "backslash"),
    ("/public\\..\\admin", "backslash"),
    # control characters, raw and encoded; a raw space counts as one
    ("/a%00", "control-character"),
    ("/a\x00", "control-character"),
    ("/a%0d%0aSet-Cookie:x", "control-character"),
    ("/a\tb", "control-character"),
    ("/a\nb", "control-character"),
    ("/a%7f", "control-character"),
    ("/a\x7f", "control-character"),
    ("/a%1F", "control-character"),
    ("/a b", "control-character"),
    ("/%C2%85", "control-character"),  # U+0085 NEXT LINE (C1 control)
    ("/%E2%80%A8", "control-character"),  # U+2028 LINE SEPARATOR
    # path parameters
    ("/a;jsessionid=1", "path-parameter"),
    ("/admin;/x", "path-parameter"),
    ("/a%3bb", "path-parameter"),
    ("/a%3Bb", "path-parameter"),
    # double encoding
    ("/%252e%252e/", "double-encoding"),
    ("/a%252fb", "double-encoding"),
    ("/%2541", "double-encoding"),
    ("/100%25ab", "double-encoding"),
    ("/%25%32%66", "double-encoding"),  # decoding unreserved escapes reveals %252f
    # malformed escapes
    ("/%zz", "bad-percent-encoding"),
    ("/%", "bad-percent-encoding"),
    ("/a%", "bad-percent-encoding"),
    ("/%4", "bad-percent-encoding"),
    ("/%4g", "bad-percent-encoding"),
    ("/%%41", "bad-percent-encoding"),
    ("/%\u0661\u0662", "bad-percent-encoding"),  # Arabic-Indic digits that int() would accept
    ("/%C0%AE%C0%AE/admin", "bad-percent-encoding"),  # overlong "."
    ("/%C0%AF", "bad-percent-encoding"),  # overlong "/"
    ("/%FF", "bad-percent-encoding"),
    ("/caf%E9", "bad-percent-encoding"),  # Latin-1, not UTF-8
    ("/%C3/%A9", "bad-percent-encoding"),  # a character split by a slash
    # raw non-ASCII, and encoded characters that fold to delimiters
    ("/caf\u00e9", "non-ascii"),
    ("/\u212aelvin", "non-ascii"),
    ("/a\udcff", "non-ascii"),  # aiohttp's surrogateescape for an invalid byte
    ("/a\uff0fb", "non-ascii"),
    ("/a%EF%BC%8Fb", "non-ascii"),  # U+FF0F FULLWIDTH SOLIDUS
    ("/a%EF%BC%BCb", "non-ascii"),  # U+FF3C FULLWIDTH REVERSE SOLIDUS
    ("/public/%EF%BC%8E%EF%BC%8E/admin", "non-ascii"),  # fullwidth ".."
    ("/public/.%EF%BC%8E/admin", "non-ascii"),
    ("/%E2%80%A5", "non-ascii"),  # U+2025 TWO DOT LEADER folds to ".."
    ("/%E2%84%80", "non-ascii"),  # U+2100 ACCOUNT OF folds to "a/c"
    ("/%EF%BC%9B", "non-ascii"),  # U+FF1B FULLWIDTH SEMICOLON
    ("/%EF%BC%85%32%66", "non-ascii"),  # U+FF05 FULLWIDTH PERCENT SIGN
]


@pytest.mark.parametrize(("raw", "expected"), ACCEPTED)
def test_accepted_paths_normalize_to_canonical_form(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected
    assert normalize_path(expected) == expected


@pytest.mark.parametrize(("raw", "reason"), REJECTED)
def test_dangerous_paths_are_refused_with_reason(raw: str, reason: str) -> None:
    with pytest.raises(PathRejected) as info:
        normalize_path(raw)
    assert info.value.reason == reason
    assert info.value.reason in REJECT_REASONS


def test_table_is_large_enough() -> None:
    assert len(ACCEPTED) + len(REJECTED) >= 40


def test_canonical_path_takes_fast_path_and_is_returned_unchanged() -> None:
    raw = "/api/v1/tenants/acme/users/42/profile.json"
    assert normalize_path(raw) is raw


def test_rejection_message_does_not_echo_path() -> None:
    with pytest.raises(PathRejected) as info:
        normalize_path("/secret-token-abc%2f")
    assert "secret-token-abc" not in str(info.value)


def test_reason_vocabulary_is_closed() -> None:
    assert (
        frozenset(
            {
                "encoded-slash",
                "backslash",
                "control-character",
                "path-parameter",
                "double-encoding",
                "dot-segment-escape",
                "bad-percent-encoding",
                "not-absolute",
                "non-ascii",
            }
        )
        == REJECT_REASONS
    )


PATTERN_CASES: list[tuple[str, str, bool]] = [
    # trailing `*` matches any rest, including `/` and empty
    ("/public/*", "/public/a/b", True),
    ("/public/*", "/public/", True),
    ("/public/*", "/public/a", True),
    ("/public/*", "/public", False),
    ("/public/*", "/publicity", False),
    ("/public/*", "/other/public/a", False),
    ("/public*", "/public", True),
    ("/public*", "/publicity/x", True),
    ("/*", "/", True),
    ("/*", "/anything/at/all", True),
    # a whole-segment `*` in the middle matches exactly one segment
    ("/api/*/health", "/api/v1/health", True),
    ("/api/*/health", "/api/v1/v2/health", False),
    ("/api/*/health", "/api/health", False),
    ("/api/*/health", "/api/v1/health/", False),
    ("/api/*/health", "/api/v1/healthz", False),
    ("/api/*/docs/*", "/api/v2/docs/a/b", True),
    ("/api/*/docs/*", "/api/v2/docs", False),
    ("/t/*/*/x", "/t/a/b/x", True),
    ("/t/*/*/x", "/t/a/x", False),
    # literal, exact
    ("/login", "/login", True),
    ("/login", "/login/", False),
    ("/login/", "/login", False),
    ("/login", "/LOGIN", False),
    # regex metacharacters are literal
    ("/a.b", "/a.b", True),
    ("/a.b", "/axb", False),
    ("/a+b", "/a+b", True),
    ("/a+b", "/aab", False),
    ("/f(x)", "/f(x)", True),
    ("/f(x)", "/fx", False),
    ("/$x", "/$x", True),
    ("/a|b", "/a", False),  # the pattern is canonicalized to /a%7Cb
    ("/a|b", "/a%7Cb", True),
    ("/x.*", "/x.abc", True),
    ("/x.*", "/xyabc", False),
    ("/a*b/c", "/a*b/c", True),  # `*` inside a segment (not last) is literal
    ("/a*b/c", "/axxb/c", False),
    ("/[ab]/*", "/a/x", False),
    # patterns are canonicalized like paths
    ("/%7Euser/*", "/~user/x", True),
    ("/caf%c3%a9", "/caf%C3%A9", True),
    ("//public/./*", "/public/a", True),
    # a path not in canonical form never matches (fail closed)
    ("/public/*", "/public/../admin", False),
    ("/public/*", "/public/%2e%2e/admin", False),
    ("/public/*", "/public//x", False),
    ("/public/*", "/public/%61", False),
    ("/public/*", "/public/a%2fb", False),
    ("/public/*", "public/a", False),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), PATTERN_CASES)
def test_path_matches(pattern: str, path: str, expected: bool) -> None:
    assert path_matches(pattern, path) is expected
    assert compile_pattern(pattern)(path) is expected


def test_compile_pattern_is_cached_and_callable() -> None:
    first = compile_pattern("/cached/*")
    assert compile_pattern("/cached/*") is first
    assert isinstance(first, PathPattern)
    assert first.pattern == "/cached/*"
    assert repr(first) == "PathPattern('/cached/*')"


@pytest.mark.parametrize("pattern", ["public/*", "", "/a/../../x", "/a%2f*", "/a b", "/é"])
def test_invalid_patterns_raise_value_error(pattern: str) -> None:
    with pytest.raises(ValueError, match="invalid path pattern"):
        compile_pattern(pattern)
