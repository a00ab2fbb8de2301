"""Tests for gateway.web.origin (Origin/Referer checks for cookie-session CSRF)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.web.origin import origin_of, request_origin, same_origin_request

ALLOWED = frozenset({"https://app.example.com"})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://app.example.com", "https://app.example.com"),
        ("https://app.example.com/", "https://app.example.com"),
        ("https://app.example.com/a/b?x=1#f", "https://app.example.com"),
        # default ports dropped
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80/x", "http://app.example.com"),
        # non-default ports kept, including the other scheme's default
        ("https://app.example.com:80", "https://app.example.com:80"),
        ("http://app.example.com:443", "http://app.example.com:443"),
        ("http://localhost:8080", "http://localhost:8080"),
        # case
        ("HTTPS://App.Example.COM", "https://app.example.com"),
        # IP literals
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("https://[2001:DB8:0:0:0:0:0:1]:443", "https://[2001:db8::1]"),
        # punycode hosts compare as sent
        ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
        # underscore (container service names)
        ("http://my_service:8080", "http://my_service:8080"),
    ],
)
def test_origin_of_normalizes(url: str, expected: str) -> None:
    assert origin_of(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "null",
        "",
        "app.example.com",
        "//app.example.com",
        "ftp://app.example.com",
        "file:///etc/passwd",
        "data:text/html,x",
        "javascript:alert(1)",
        "https://",
        "https:///path",
        "https://app.example.com@evil.com",
        "https://user:pw@app.example.com",
        "https://evil.com\\@app.example.com",
        "https://app.example.com:",
        "https://app.example.com:0",
        "https://app.example.com:65536",
        "https://app.example.com:443x",
        "https://app.example.com:-1",
        "https://app.example.com.",
        "https://-app.example.com",
        "https://app..example.com",
        "https://app example.com",
        "https://app.example.com\t",
        " https://app.example.com",
        "https://b\u00fccher.example",
        "https://999.0.0.1",
        "https://127.1",
        "https://0x7f.0.0.1",
        "https://[::1",
        "https://[not-ipv6]",
        "https://[fe80::1%25eth0]",
        "https://::1",
        "https://" + "a" * 8200,
    ],
)
def test_origin_of_rejects_garbage(url: str) -> None:
    assert origin_of(url) is None


def test_matching_origin_is_accepted() -> None:
    assert same_origin_request("https://app.example.com", None, ALLOWED)


def test_origin_default_port_and_case_are_normalized() -> None:
    assert same_origin_request("HTTPS://APP.example.com:443", None, ALLOWED)


def test_null_origin_is_rejected_even_with_good_referer() -> None:
    assert not same_origin_request("null", "https://app.example.com/form", ALLOWED)


def test_present_bad_origin_is_not_overridden_by_referer() -> None:
    assert not same_origin_request("https://evil.com", "https://app.example.com/form", ALLOWED)


def test_malformed_origin_is_rejected() -> None:
    assert not same_origin_request("not an origin", "https://app.example.com/", ALLOWED)
    assert not same_origin_request("", "https://app.example.com/", ALLOWED)


def test_origin_with_path_is_rejected() -> None:
    # Browsers never send a path in Origin; one present means a non-browser or a trick.
    assert not same_origin_request("https://app.example.com/x", None, ALLOWED)


def test_referer_fallback_when_origin_absent() -> None:
    assert same_origin_request(None, "https://app.example.com/settings?tab=1", ALLOWED)


def test_cross_origin_referer_is_rejected() -> None:
    assert not same_origin_request(None, "https://evil.com/app.example.com", ALLOWED)


def test_referer_with_userinfo_is_rejected() -> None:
    assert not same_origin_request(None, "https://app.example.com@evil.com/", ALLOWED)


def test_missing_both_is_rejected() -> None:
    assert not same_origin_request(None, None, ALLOWED)
    assert not same_origin_request(None, "", ALLOWED)


def test_port_mismatch_is_rejected() -> None:
    assert not same_origin_request("https://app.example.com:8443", None, ALLOWED)


def test_scheme_mismatch_is_rejected() -> None:
    assert not same_origin_request("http://app.example.com", None, ALLOWED)


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.app.example.com",
        "https://example.com",
        "https://app.example.com.evil.com",
        "https://app-example.com",
    ],
)
def test_subdomain_and_lookalike_mismatch_is_rejected(origin: str) -> None:
    assert not same_origin_request(origin, None, ALLOWED)


def test_empty_allowed_set_rejects_everything() -> None:
    assert not same_origin_request("https://app.example.com", None, frozenset())


@pytest.mark.parametrize(
    ("scheme", "host", "expected"),
    [
        ("https", "app.example.com", "https://app.example.com"),
        ("HTTPS", "App.Example.com:443", "https://app.example.com"),
        ("http", "localhost:8080", "http://localhost:8080"),
        ("http", "127.0.0.1", "http://127.0.0.1"),
        ("http", "[::1]:8080", "http://[::1]:8080"),
        ("https", "[2001:db8::1]", "https://[2001:db8::1]"),
    ],
)
def test_request_origin_valid(scheme: str, host: str, expected: str) -> None:
    assert request_origin(scheme, host) == expected


@pytest.mark.parametrize(
    ("scheme", "host"),
    [
        ("ftp", "app.example.com"),
        ("https", ""),
        ("https", "evil.com/x"),
        ("https", "user@app.example.com"),
        ("https", "app.example.com:"),
        ("https", "app.example.com:99999"),
        ("https", "app.example.com:abc"),
        ("https", "app.example.com "),
        ("https", "app.example.com\r\nX: y"),
        ("https", "app.example.com?x"),
        ("https", "app.example.com#x"),
        ("https", "::1"),
        ("https", "[::1]x"),
        ("https", "[zz]"),
        ("https", "a" * 64 + ".example.com"),
        ("https", "b\u00fccher.example"),
        ("https", "app.example.com."),
    ],
)
def test_request_origin_rejects_malformed_host(scheme: str, host: str) -> None:
    assert request_origin(scheme, host) is None


def test_request_origin_matches_browser_origin() -> None:
    own = request_origin("https", "app.example.com:443")
    assert own is not None
    assert same_origin_request("https://app.example.com", None, frozenset({own}))


_URLISH = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda scheme, host, port: f"{scheme}://{host}{port}",
        st.sampled_from(["http", "HTTPS", "https", "ftp", "javascript"]),
        st.text(alphabet="aZ0.-_[]:@\\%/ \t", max_size=20),
        st.sampled_from(["", ":80", ":443", ":8080", ":", ":0", "/x", "?y"]),
    ),
)


@settings(max_examples=500)
@given(_URLISH)
def test_property_origin_of_is_idempotent_and_canonical(url: str) -> None:
    result = origin_of(url)
    if result is None:
        return
    assert origin_of(result) == result
    assert result == result.lower()
    assert not (result.startswith("http://") and result.endswith(":80"))
    assert not (result.startswith("https://") and result.endswith(":443"))
    assert same_origin_request(result, None, frozenset({result}))
