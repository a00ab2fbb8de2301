"""Unit tests for gateway.proxy.clientip."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.proxy.clientip import (
    UNIX_PEER,
    TrustedProxies,
    parse_forwarded_for,
    parse_node,
    rate_limit_key_ip,
    resolve_client_ip,
)

TRUSTED = TrustedProxies(
    [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")],
)
NONE_TRUSTED = TrustedProxies([])


# --- TrustedProxies ----------------------------------------------------------------------


def test_trusts() -> None:
    assert TRUSTED.trusts("10.1.2.3")
    assert TRUSTED.trusts("fd00::1")
    assert not TRUSTED.trusts("192.0.2.1")
    assert not TRUSTED.trusts("2001:db8::1")
    assert not TRUSTED.trusts("not-an-ip")
    assert not TRUSTED.trusts("")


def test_trusts_ipv4_mapped() -> None:
    assert TRUSTED.trusts("::ffff:10.0.0.1")
    assert not TRUSTED.trusts("::ffff:192.0.2.1")


def test_trusts_cache_is_consistent_and_bounded() -> None:
    t = TrustedProxies([ipaddress.ip_network("10.0.0.0/8")])
    for i in range(5000):
        t.trusts(f"garbage-{i}")
    assert t.trusts("10.0.0.1")
    assert t.trusts("10.0.0.1")
    assert not t.trusts("192.0.2.1")
    assert len(t._cache) <= 4096


# --- resolve_client_ip: untrusted peers --------------------------------------------------


def test_xff_from_untrusted_peer_ignored() -> None:
    client, chain = resolve_client_ip("192.0.2.9", ["1.2.3.4"], ["for=5.6.7.8"], TRUSTED)
    assert (client, chain) == ("192.0.2.9", ["192.0.2.9"])


def test_xff_ignored_without_trusted_proxies() -> None:
    client, chain = resolve_client_ip("10.0.0.1", ["1.2.3.4"], [], NONE_TRUSTED)
    assert (client, chain) == ("10.0.0.1", ["10.0.0.1"])


def test_ipv4_mapped_peer_normalised() -> None:
    client, _ = resolve_client_ip("::ffff:192.0.2.9", ["1.2.3.4"], [], TRUSTED)
    assert client == "192.0.2.9"


def test_ipv4_mapped_trusted_peer() -> None:
    client, chain = resolve_client_ip("::ffff:10.0.0.1", ["198.51.100.4"], [], TRUSTED)
    assert (client, chain) == ("198.51.100.4", ["198.51.100.4", "10.0.0.1"])


# --- resolve_client_ip: trusted peers ----------------------------------------------------


def test_trusted_chain_with_several_hops() -> None:
    # The client forged "6.6.6.6"; 198.51.100.4 is the right-most untrusted hop.
    client, chain = resolve_client_ip(
        "10.0.0.1",
        ["6.6.6.6, 198.51.100.4", " 10.0.0.3 ,10.0.0.2"],
        [],
        TRUSTED,
    )
    assert client == "198.51.100.4"
    assert chain == ["198.51.100.4", "10.0.0.3", "10.0.0.2", "10.0.0.1"]


def test_all_trusted_chain_client_is_leftmost() -> None:
    client, chain = resolve_client_ip("10.0.0.1", ["10.0.0.9, 10.0.0.8"], [], TRUSTED)
    assert client == "10.0.0.9"
    assert chain == ["10.0.0.9", "10.0.0.8", "10.0.0.1"]


def test_trusted_peer_without_headers() -> None:
    assert resolve_client_ip("10.0.0.1", [], [], TRUSTED) == ("10.0.0.1", ["10.0.0.1"])


@pytest.mark.parametrize("garbage", ["<script>", "unknown", "", "1.2.3", "_hidden", "evil.com"])
def test_malformed_hop_stops_walk(garbage: str) -> None:
    client, chain = resolve_client_ip(
        "10.0.0.1", [f"198.51.100.4, {garbage}, 10.0.0.2"], [], TRUSTED
    )
    assert client == "10.0.0.2"
    assert chain == ["10.0.0.2", "10.0.0.1"]


def test_malformed_last_hop_gives_peer() -> None:
    client, chain = resolve_client_ip("10.0.0.1", ["198.51.100.4, garbage"], [], TRUSTED)
    assert (client, chain) == ("10.0.0.1", ["10.0.0.1"])


def test_ipv6_hops_and_scope_dropped() -> None:
    client, chain = resolve_client_ip(
        "fd00::1", ["2001:db8::5%evil text, [fd00::2]:443"], [], TRUSTED
    )
    assert client == "2001:db8::5"
    assert chain == ["2001:db8::5", "fd00::2", "fd00::1"]


def test_xff_preferred_over_forwarded() -> None:
    client, _ = resolve_client_ip("10.0.0.1", ["198.51.100.4"], ["for=203.0.113.1"], TRUSTED)
    assert client == "198.51.100.4"


def test_forwarded_used_when_no_xff() -> None:
    client, chain = resolve_client_ip(
        "10.0.0.1",
        [],
        ['for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https', "For=10.0.0.7;by=10.0.0.1"],
        TRUSTED,
    )
    assert client == "2001:db8:cafe::17"
    assert chain == ["2001:db8:cafe::17", "10.0.0.7", "10.0.0.1"]


def test_forwarded_unknown_stops_walk() -> None:
    client, _ = resolve_client_ip("10.0.0.1", [], ["for=203.0.113.1, for=unknown"], TRUSTED)
    assert client == "10.0.0.1"


def test_unix_socket_peer() -> None:
    assert resolve_client_ip(None, ["198.51.100.4"], [], TRUSTED) == (UNIX_PEER, [UNIX_PEER])
    trusting = TrustedProxies([], trust_unix_socket=True)
    client, chain = resolve_client_ip(None, ["198.51.100.4"], [], trusting)
    assert (client, chain) == ("198.51.100.4", ["198.51.100.4", UNIX_PEER])


# --- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ("192.0.2.60", "192.0.2.60"),
        (" 192.0.2.60:8080 ", "192.0.2.60"),
        ('"192.0.2.60"', "192.0.2.60"),
        ('"[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("2001:db8:0:0::1", "2001:db8::1"),
        ("[::ffff:192.0.2.1]:80", "192.0.2.1"),
        ("[2001:db8::1]:_obf", "2001:db8::1"),
        ("unknown", None),
        ("_hidden", None),
        ("[192.0.2.1]", None),
        ("[2001:db8::1", None),
        ("[2001:db8::1]x", None),
        ("192.0.2.1:port", None),
        ("192.0.2.1:123456", None),
        ("", None),
        ('""', None),
        ("01.2.3.4", None),
    ],
)
def test_parse_node(node: str, expected: str | None) -> None:
    assert parse_node(node) == expected


def test_parse_forwarded_for() -> None:
    values = [
        'for="[2001:db8::1]:4711";proto=https;by=10.0.0.1, for=192.0.2.1',
        'proto=http;host="a,b", FOR = 198.51.100.1 ',
    ]
    assert parse_forwarded_for(values) == [
        '"[2001:db8::1]:4711"',
        "192.0.2.1",
        "",
        "198.51.100.1",
    ]


def test_parse_forwarded_for_quoted_comma_and_escape() -> None:
    assert parse_forwarded_for(['for="a\\",b";host=x, for=1.2.3.4']) == ['"a\\",b"', "1.2.3.4"]


# --- rate-limit keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_rate_limit_key_ip(ip: str, key: str) -> None:
    assert rate_limit_key_ip(ip) == key


def test_ipv6_same_64_shares_key() -> None:
    assert rate_limit_key_ip("2001:db8:1:2::1") == rate_limit_key_ip("2001:db8:1:2:ffff::9")
    assert rate_limit_key_ip("2001:db8:1:2::1") != rate_limit_key_ip("2001:db8:1:3::1")
