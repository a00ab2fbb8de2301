"""Tests for gateway.web.redirects.safe_redirect_target (the hosted pages' ``rd``)."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.web.redirects import MAX_REDIRECT_LENGTH, safe_redirect_target

DEFAULT = "/"

OPEN_REDIRECT_CORPUS: list[str] = [
    # plain absolute URL
    "https://evil.com",
    # absolute URL, plain http
    "http://evil.com/",
    # protocol-relative: inherits the current scheme, points to another host
    "//evil.com",
    # protocol-relative with a path that looks local
    "//evil.com/app",
    # triple slash: browsers still read it as an authority
    "///evil.com",
    # backslash as second character: browsers read `\` as `/` (oauth2-proxy advisories)
    "/\\evil.com",
    # double backslash
    "\\\\evil.com",
    # mixed slash-backslash
    "\\/evil.com",
    # backslash later in the path (policy: no `\` anywhere)
    "/app\\..\\..\\evil.com",
    # raw tab between slashes: browsers strip it -> //evil.com (CVE-2020-11053)
    "/\t/evil.com",
    # percent-encoded tab between slashes (CVE-2020-11053)
    "/%09/evil.com",
    # percent-encoded vertical tab (CVE-2020-11053)
    "/%0b/evil.com",
    # percent-encoded CR (CVE-2020-11053)
    "/%0d/evil.com",
    # percent-encoded LF (CVE-2020-11053)
    "/%0a/evil.com",
    # CRLF header injection into Location
    "/app%0d%0aSet-Cookie:%20x=1",
    # raw CRLF header injection
    "/app\r\nSet-Cookie: x=1",
    # encoded NUL byte truncation
    "/app%00.evil.com",
    # raw NUL byte
    "/app\x00",
    # encoded double slash after the leading slash
    "/%2f%2fevil.com",
    # upper-case encoded double slash
    "/%2F%2Fevil.com",
    # encoded backslash after the leading slash
    "/%5cevil.com",
    # encoded double slash without a leading slash
    "%2f%2fevil.com",
    # double-encoded slash: a second decode gives //evil.com
    "/%252f%252fevil.com",
    # double-encoded backslash
    "/%255cevil.com",
    # triple-encoded slash
    "/%25252fevil.com",
    # beyond the decode budget: five layers of encoding
    "/%2525252525252fevil.com",
    # malformed escape that a lenient decoder could turn into `%2f`
    "/%%32f%%32fevil.com",
    # truncated escape
    "/app%2",
    # javascript: scheme
    "javascript:alert(1)",
    # mixed-case scheme
    "JaVaScRiPt:alert(1)",
    # scheme behind leading whitespace (browsers strip it)
    " javascript:alert(1)",
    # scheme behind a leading control character (browsers strip C0 controls)
    "\x01javascript:alert(1)",
    # scheme with an embedded tab (browsers strip it)
    "java\tscript:alert(1)",
    # data: URL
    "data:text/html,<script>alert(1)</script>",
    # vbscript: scheme
    "vbscript:msgbox(1)",
    # no leading slash: relative to the login page, then interpreted by the framework
    "evil.com",
    # userinfo form without a leading slash
    "@evil.com",
    # scheme-relative with userinfo
    "//app.example.com@evil.com",
    # leading space before a good path
    " /app",
    # trailing newline
    "/app\n",
    # raw space inside the path
    "/app x",
    # fullwidth solidus: NFKC folds it to `/`
    "/\uff0fevil.com",
    # fullwidth solidus, percent-encoded UTF-8
    "/%EF%BC%8Fevil.com",
    # ideographic full stop: IDNA folds it to `.`
    "//evil\u3002com",
    # ideographic full stop in a path, percent-encoded
    "/evil%E3%80%82com",
    # non-ASCII in the path at all
    "/caf\u00e9",
    # dot-segment that normalizes to a double slash
    "/.//evil.com",
    # encoded dot-segment variant: /./ + %2f -> //evil.com after decode
    "/./%2fevil.com",
    # parent segment that normalizes to a double slash
    "/a/..//evil.com",
    # over-long value
    "/" + "a" * MAX_REDIRECT_LENGTH,
    # redirect loop into sign-out
    "/.gateway/logout",
    # redirect loop into the login page
    "/.gateway/login?rd=/.gateway/login",
    # gateway auth API
    "/.gateway/auth/signout",
    # case variant of the gateway namespace
    "/.GATEWAY/logout",
    # percent-encoded gateway path
    "/%2egateway/%6cogout",
    # dot-segment escape from the allowed console into logout
    "/.gateway/console/../logout",
    # dot-segment from the app into the gateway namespace
    "/app/../.gateway/logout",
    # merged slashes inside the gateway namespace
    "/.gateway//logout",
    # the bare gateway prefix
    "/.gateway",
    # a look-alike of the console prefix is still gateway namespace
    "/.gateway/consolex",
    # encoded `?` hides a dot-segment escape from a checker that cuts at the decoded query
    "/a%3F/..//evil.com",
    # same trick into the gateway namespace
    "/x%3f/../.gateway/logout",
    # encoded dot-segments collapse to a double slash
    "/%2e%2e//evil.com",
    # double-encoded dot-segments
    "/%252e%252e//evil.com",
    # encoded dot-segments into the gateway namespace
    "/a/%2e%2e/.gateway/logout",
    # CRLF smuggled in the query
    "/a?x=%0d%0aSet-Cookie:%20x=1",
    # malformed escape in the query
    "/a?x=%zz",
    # DEL character
    "/app\x7f",
    # empty string
    "",
]


@pytest.mark.parametrize("payload", OPEN_REDIRECT_CORPUS)
def test_open_redirect_corpus_is_rejected(payload: str) -> None:
    assert safe_redirect_target(payload, DEFAULT) == DEFAULT


def test_corpus_is_large_enough() -> None:
    assert len(OPEN_REDIRECT_CORPUS) >= 30


def test_none_gives_default() -> None:
    assert safe_redirect_target(None) == "/"


def test_custom_default_is_returned_unchanged() -> None:
    assert safe_redirect_target("//evil.com", "/home") == "/home"


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/app",
        "/app?x=1#f",
        # `//` in the query is harmless: only the path can form an authority
        "/a/b?next=//x",
        # `@` after a leading `/` is a path character, never userinfo
        "/@evil.com",
        "/users/@alice",
        # `:` after a leading `/` is a path character, never a scheme
        "/javascript:alert(1)",
        # empty segments inside the path stay on this host
        "/a//b",
        # encoded slash inside a segment is not at the start
        "/a%2fb",
        # encoded characters that stay printable ASCII; an encoded space in the query is fine
        "/search?q=a%20b&x=%2F%2F",
        # `//` in the fragment is harmless too
        "/a#%2F%2Fevil",
        "/?",
        # the operator console is a legitimate return target
        "/.gateway/console",
        "/.gateway/console/tenants?page=2",
        # a path that merely contains `.gateway` elsewhere
        "/docs/.gateway/logout",
        # parent segments that stay on this host
        "/a/../b",
        "/" + "a" * (MAX_REDIRECT_LENGTH - 1),
    ],
)
def test_safe_targets_are_returned_exactly(target: str) -> None:
    assert safe_redirect_target(target, "/default") == target


_INTERESTING = st.sampled_from(
    [
        "/",
        "\\",
        "%",
        "%2f",
        "%2F",
        "%5c",
        "%25",
        "%20",
        "%3f",
        "%2e",
        "%09",
        "%0d%0a",
        "%00",
        "%EF%BC%8F",
        ".",
        "..",
        "@",
        ":",
        "?",
        "#",
        " ",
        "\t",
        "\n",
        "\x00",
        "\uff0f",
        "\u3002",
        ".gateway",
        "logout",
        "console",
        "evil.com",
        "javascript:",
        "a",
    ]
)
_RD = st.one_of(
    st.text(max_size=64),
    st.lists(_INTERESTING, max_size=12).map("".join),
)


def _assert_safe_shape(result: str) -> None:
    assert result.startswith("/")
    assert len(result) == 1 or result[1] not in "/\\"
    assert "\\" not in result
    assert all(0x21 <= ord(ch) <= 0x7E for ch in result), repr(result)


@settings(max_examples=500)
@given(_RD)
def test_property_result_is_default_or_safe_relative_path(rd: str) -> None:
    default = "/fallback"
    result = safe_redirect_target(rd, default)
    if result == default:
        return
    assert result == rd
    _assert_safe_shape(result)


@settings(max_examples=300)
@given(st.lists(_INTERESTING, max_size=12).map(lambda parts: "/" + "".join(parts)))
def test_property_accepted_value_stays_safe_when_decoded(rd: str) -> None:
    result = safe_redirect_target(rd, "/fallback")
    if result == "/fallback":
        return
    layer = result
    for _ in range(4):
        layer = unquote(layer)
        path_end = min((i for i in (layer.find("?"), layer.find("#")) if i != -1), default=None)
        _assert_safe_shape(layer[:path_end])
        assert "\\" not in layer
        assert all(0x20 <= ord(ch) <= 0x7E for ch in layer), repr(layer)
