"""Property tests: the normalized path means one thing to the policy and to any upstream."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.pipeline.paths import (
    REJECT_REASONS,
    PathRejected,
    _normalize_slow,
    compile_pattern,
    normalize_path,
)

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"

# Pieces an attacker (or a sloppy client) might put into a path.
HOSTILE_ATOMS = [
    "a",
    "admin",
    ".",
    "..",
    "...",
    "%2e",
    "%2E%2e",
    ".%2E",
    "%41",
    "%7e",
    "//",
    "/",
    "%2f",
    "%2F",
    ";",
    "%3b",
    "%25",
    "%252e",
    "%252F",
    "%25%32%65",
    "\\",
    "%5c",
    "%00",
    "%0a",
    "\t",
    " ",
    "%20",
    "%",
    "%4",
    "%zz",
    "|",
    "[",
    "#",
    "?",
    "%3F",
    "%C3%A9",
    "%c3%a9",
    "%C3",
    "%FF",
    "%C0%AE",
    "%EF%BC%8E",
    "%EF%BC%8F",
    "%E2%80%A5",
    "%F0%9F%98%80",
    "\u00e9",
    "!$&'()*+,=:@",
]

# Pieces that are usually accepted, so accepted-input properties see many examples.
MOSTLY_SAFE_ATOMS = [
    "a",
    "B",
    ".",
    "..",
    "...",
    "%2e",
    "%2E%2e",
    ".%2E",
    "%41",
    "%7e",
    "//",
    "/",
    "%25",
    "%25z",
    "%20",
    "%3A",
    "|",
    "^",
    "%C3%A9",
    "%c3%a9",
    "%F0%9F%98%80",
    "~x",
    "*",
    "!$&'()+,=:@",
]

unreserved_text = st.text(alphabet=UNRESERVED, min_size=1, max_size=6)


def _paths(atoms: list[str]) -> st.SearchStrategy[str]:
    segment = st.lists(st.sampled_from(atoms) | unreserved_text, max_size=3).map("".join)
    return st.builds(
        lambda segments, trailing: "/" + "/".join(segments) + ("/" if trailing else ""),
        st.lists(segment, max_size=8),
        st.booleans(),
    )


hostile_paths = _paths(HOSTILE_ATOMS)
mostly_safe_paths = _paths(MOSTLY_SAFE_ATOMS)
any_paths = hostile_paths | mostly_safe_paths

# An RFC 3986 path-absolute (or "/") with no `;`, upper-case escapes, no empty segment.
CANONICAL = re.compile(r"(?:/(?:[A-Za-z0-9\-._~!$&'()*+,=:@]|%[0-9A-F]{2})+)+/?|/")
FORBIDDEN_ESCAPES = re.compile(r"%(?:2F|5C|3B|[01][0-9A-F]|7F|25[0-9A-Fa-f]{2})")
UNRESERVED_ESCAPE = re.compile(r"%(?:4[1-9A-F]|5[0-9A]|6[1-9A-F]|7[0-9A]|3[0-9]|2D|2E|5F|7E)")


def _accepted(raw: str) -> str | None:
    try:
        return normalize_path(raw)
    except PathRejected as exc:
        reason: str = exc.reason
    assert reason in REJECT_REASONS
    return None


# --- a deliberately lenient upstream -------------------------------------------------------


def lenient_decode(path: str) -> str:
    """Decode every valid escape once, byte for byte (latin-1 keeps the structure 1:1)."""
    return unquote(path, encoding="latin-1")


def lenient_resolve(path: str) -> list[str]:
    """Treat `\\` as `/`, collapse empty segments, resolve dot segments clamping at the root."""
    segments: list[str] = []
    for segment in path.replace("\\", "/").split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return segments


def lenient(path: str) -> list[str]:
    """The resource a lenient upstream acts on: decode once, then resolve."""
    return lenient_resolve(lenient_decode(path))


def policy_view(path: str) -> list[str]:
    """The resource the policy decided on: the normalized path's own segments, decoded."""
    return [lenient_decode(segment) for segment in path.split("/") if segment]


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=250, deadline=None)
@given(any_paths)
@example("/a/%2e%2e/b")
@example("/%25%32%65%25%32%65/")
def test_normalize_is_idempotent(raw: str) -> None:
    out = _accepted(raw)
    if out is not None:
        assert normalize_path(out) == out


@settings(max_examples=300, deadline=None)
@given(any_paths | st.text(max_size=30))
def test_fast_path_agrees_with_full_normalizer(raw: str) -> None:
    try:
        expected: str | None = _normalize_slow(raw)
    except PathRejected as exc:
        expected = exc.reason
    try:
        got: str | None = normalize_path(raw)
    except PathRejected as exc:
        got = exc.reason
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.text(alphabet="/.%2eEfF5cC;\\aA0\x00 ", max_size=40))
def test_arbitrary_text_only_ever_raises_path_rejected(raw: str) -> None:
    out = _accepted(raw)
    if out is not None:
        assert CANONICAL.fullmatch(out)


@settings(max_examples=250, deadline=None)
@given(any_paths)
def test_output_has_no_ambiguous_syntax(raw: str) -> None:
    out = _accepted(raw)
    if out is None:
        return
    assert out.isascii()
    assert CANONICAL.fullmatch(out), out
    assert "//" not in out
    assert ";" not in out
    assert "\\" not in out
    assert not any(c <= " " or c == "\x7f" for c in out)
    assert FORBIDDEN_ESCAPES.search(out) is None, out
    assert UNRESERVED_ESCAPE.search(out) is None, out
    segments = out.split("/")[1:]
    assert "." not in segments
    assert ".." not in segments
    if raw.endswith("/") and out != "/":
        assert out.endswith("/")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mostly_safe_paths | hostile_paths)
@example("//public/%2e%2e/admin")
@example("/a/b/.%2e/c|d/")
def test_lenient_upstream_acts_on_what_the_policy_saw(raw: str) -> None:
    out = _accepted(raw)
    if out is None:
        return
    # What the policy saw is what a lenient upstream acts on: decoding and resolving the
    # forwarded path changes no segment boundary and resolves no further dot segment.
    assert lenient(out) == policy_view(out)
    # ...and re-resolving it is a fixed point (nothing left for the upstream to interpret).
    assert lenient_resolve(lenient_decode(out)) == lenient("/" + "/".join(lenient(out)))
    # The raw request, had it reached the lenient upstream directly, names the same resource.
    assert lenient(raw) == lenient(out)


@settings(max_examples=300, deadline=None)
@given(any_paths)
def test_double_decoding_upstream_sees_no_new_structure(raw: str) -> None:
    out = _accepted(raw)
    if out is None:
        return
    twice = [lenient_decode(lenient_decode(segment)) for segment in out.split("/") if segment]
    assert lenient_resolve(lenient_decode(lenient_decode(out))) == twice


@settings(max_examples=300, deadline=None)
@given(any_paths)
def test_unicode_folding_upstream_sees_no_new_structure(raw: str) -> None:
    out = _accepted(raw)
    if out is None:
        return

    def fold(text: str) -> str:
        return unicodedata.normalize("NFKC", unquote(text, encoding="utf-8", errors="strict"))

    folded_segments = [fold(segment) for segment in out.split("/") if segment]
    assert lenient_resolve(fold(out)) == folded_segments


# --- pattern matching against a reference --------------------------------------------------

pattern_segment = st.sampled_from(["a", "b", "a.b", "a+", "(x)", "$", "*", "ab"])
path_segment = st.sampled_from(["a", "b", "a.b", "a+", "(x)", "$", "ab", "aab", "axb", "x"])


def reference_match(pattern: str, path: str) -> bool:
    """Segment-by-segment matcher written independently of the compiled one."""
    star = pattern.endswith("*")
    body = pattern[:-1] if star else pattern
    want = body.split("/")
    have = path.split("/")

    def same(p: str, s: str) -> bool:
        return (p == "*" and s != "") or p == s

    head_ok = len(have) >= len(want) and all(
        same(p, s) for p, s in zip(want[:-1], have[: len(want) - 1], strict=True)
    )
    if not head_ok:
        return False
    if star:
        return "/".join(have[len(want) - 1 :]).startswith(want[-1])
    return len(have) == len(want) and want[-1] == have[-1]


@settings(max_examples=250, deadline=None)
@given(
    st.lists(pattern_segment, min_size=1, max_size=4),
    st.sampled_from(["", "/*", "*", "/"]),
    st.lists(path_segment, max_size=5),
    st.booleans(),
)
def test_compiled_pattern_agrees_with_reference(
    pattern_segments: list[str], tail: str, path_segments: list[str], trailing: bool
) -> None:
    pattern = "/" + "/".join(pattern_segments) + tail
    path = "/" + "/".join(path_segments) + ("/" if trailing and path_segments else "")
    matcher = compile_pattern(pattern)
    assert matcher(path) is reference_match(matcher.pattern, path)
