"""Unit tests for gateway.proxy.headers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.proxy.headers import (
    DEFAULT_OWNED_HEADERS,
    HOP_BY_HOP,
    METHOD_OVERRIDE_HEADERS,
    VERDICT_ENTRIES,
    OwnedHeaders,
    build_response_headers,
    build_upstream_request_headers,
    canonical_name,
    is_websocket_upgrade,
    new_request_id,
    response_headers,
    response_pairs,
    set_forwarded_headers,
    upgrade_protocol,
    valid_request_id,
)

OWNED = OwnedHeaders(["X-Custom-Identity"], prefixes=["X-Pomerium-Claim-"])


def proxy(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


# --- canonical names and ownership -------------------------------------------------------


@pytest.mark.parametrize("name", ["X_User_Id", "x.user.id", "X-USER-ID", "x-user-id", "X_uSeR.iD"])
def test_canonical_name(name: str) -> None:
    assert canonical_name(name) == "x-user-id"


def test_owned_contains_defaults_configured_and_prefixes() -> None:
    assert OWNED.contains("X-User-Id")
    assert OWNED.contains("x_tenant")
    assert OWNED.contains("X.Custom.Identity")
    assert OWNED.contains("x_pomerium_claim_email")
    assert OWNED.contains("X-Auth-Request-User")
    assert "TRACEPARENT" in OWNED
    assert not OWNED.contains("X-User-Agent")
    assert not OWNED.contains("Accept")


# --- upstream request headers ------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling", ["X-User-Id", "x-user-id", "X_USER_ID", "x.user.id", "X_User.Id", "x-USER_id"]
)
def test_identity_header_stripped_in_every_spelling(spelling: str) -> None:
    out = build_upstream_request_headers(proxy((spelling, "admin"), ("Accept", "*/*")), OWNED)
    assert list(out.items()) == [("Accept", "*/*")]


def test_duplicates_and_mixed_spellings_all_stripped() -> None:
    inbound = proxy(
        ("X-User-Id", "a"),
        ("x_user_id", "b"),
        ("X.User.Id", "c"),
        ("X-User-Id", "d"),
        ("X-Gateway-Assertion", "forged"),
        ("X_Tenant", "other"),
        ("X-Forwarded-For", "1.2.3.4"),
        ("Forwarded", "for=1.2.3.4"),
        ("X-Real-IP", "1.2.3.4"),
        ("X-Request-Id", "abc"),
        ("traceparent", "00-x"),
        ("X-Custom-Identity", "x"),
        ("X-Pomerium-Claim-Email", "x"),
    )
    assert len(build_upstream_request_headers(inbound, OWNED)) == 0


def test_end_to_end_headers_keep_order_duplicates_and_spelling() -> None:
    inbound = proxy(
        ("Host", "example.com"),
        ("Accept", "text/html"),
        ("Cookie", "a=1"),
        ("X-App", "1"),
        ("cookie", "b=2"),
        ("Content-Length", "5"),
        ("Authorization", "Bearer t"),
    )
    out = build_upstream_request_headers(inbound, OWNED)
    assert list(out.items()) == [
        ("Accept", "text/html"),
        ("Cookie", "a=1"),
        ("X-App", "1"),
        ("cookie", "b=2"),
        ("Content-Length", "5"),
        ("Authorization", "Bearer t"),
    ]
    assert out.getall("Cookie") == ["a=1", "b=2"]


def test_hop_by_hop_removed() -> None:
    inbound = proxy(*((name.title(), "x") for name in HOP_BY_HOP), ("Accept", "*/*"))
    out = build_upstream_request_headers(inbound, OWNED)
    assert list(out.keys()) == ["Accept"]
    assert "Connection" not in out


def test_host_removed() -> None:
    out = build_upstream_request_headers(proxy(("HOST", "evil"), ("Accept", "*/*")), OWNED)
    assert "Host" not in out


@pytest.mark.parametrize(
    "name", [*METHOD_OVERRIDE_HEADERS, "X-HTTP-Method-Override", "X_HTTP_Method_Override"]
)
def test_method_override_removed(name: str) -> None:
    out = build_upstream_request_headers(proxy((name, "DELETE")), OWNED)
    assert len(out) == 0


def test_connection_naming_identity_header_cannot_remove_gateway_copy() -> None:
    inbound = proxy(("Connection", "X-User-Id"), ("X-User-Id", "forged"))
    out = build_upstream_request_headers(inbound, OWNED)
    assert "X-User-Id" not in out
    assert "Connection" not in out
    # The gateway injects into the returned dict; nothing strips it afterwards.
    out["X-User-Id"] = "u-1"
    assert out.getall("X-User-Id") == ["u-1"]


def test_connection_naming_end_to_end_header_removes_it() -> None:
    inbound = proxy(("Connection", "x-app"), ("X-App", "1"), ("Accept", "*/*"))
    assert list(build_upstream_request_headers(inbound, OWNED).keys()) == ["Accept"]


def test_connection_lists_multiple_tokens_across_occurrences() -> None:
    inbound = proxy(
        ("Connection", "keep-alive, X-One ,x-two"),
        ("connection", "X-Three"),
        ("X-One", "1"),
        ("X-Two", "2"),
        ("X-Three", "3"),
        ("X-Four", "4"),
        ("Keep-Alive", "timeout=5"),
    )
    assert list(build_upstream_request_headers(inbound, OWNED).items()) == [("X-Four", "4")]


def test_connection_cannot_remove_content_length() -> None:
    inbound = proxy(("Connection", "content-length"), ("Content-Length", "3"))
    assert build_upstream_request_headers(inbound, OWNED)["Content-Length"] == "3"


def test_plain_mapping_input() -> None:
    out = build_upstream_request_headers({"x_user_id": "a", "Accept": "*/*"}, OWNED)
    assert list(out.items()) == [("Accept", "*/*")]


_SEPARATOR_VARIANTS = st.sampled_from("-_.")


@st.composite
def owned_spelling(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from([*DEFAULT_OWNED_HEADERS, "X-Custom-Identity"]))
    chars = []
    for ch in name:
        if ch == "-":
            chars.append(draw(_SEPARATOR_VARIANTS))
        elif ch.isalpha():
            chars.append(ch.upper() if draw(st.booleans()) else ch.lower())
        else:
            chars.append(ch)
    return "".join(chars)


@given(
    owned_names=st.lists(owned_spelling(), min_size=1, max_size=12),
    positions=st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=12),
)
def test_property_no_owned_header_survives(owned_names: list[str], positions: list[int]) -> None:
    safe = [("Accept", "*/*"), ("X-App", "1"), ("Cookie", "a=1")]
    pairs = list(safe)
    for name, pos in zip(owned_names, positions * len(owned_names), strict=False):
        pairs.insert(pos % (len(pairs) + 1), (name, "forged"))
    # A Connection header naming the owned names must not change the outcome either.
    pairs.append(("Connection", ", ".join(owned_names)))
    out = build_upstream_request_headers(proxy(*pairs), OWNED)
    assert not any(OWNED.contains(name) for name in out)
    assert list(out.items()) == safe


def test_remembered_verdicts_are_bounded_and_a_flood_still_strips() -> None:
    owned = OwnedHeaders(["X-Custom-Identity"])
    flood = [(f"X-Flood-{i}", "1") for i in range(VERDICT_ENTRIES + 10)]
    forged = [("x_user_id", "forged"), ("X-" + "A" * 100, "long"), ("Accept", "*/*")]
    for _ in range(2):  # the second pass answers from what the first remembered
        out = build_upstream_request_headers(proxy(*flood, *forged), owned)
        assert "x_user_id" not in out and "X-User-Id" not in out
        assert out["X-" + "A" * 100] == "long" and out["X-Flood-0"] == "1"
        assert len(owned._verdicts) <= VERDICT_ENTRIES
    assert "X-" + "A" * 100 not in owned._verdicts  # long names are never remembered
    assert owned.request_verdict("x_user_id") == owned.request_verdict("X-USER-ID") != 0


# --- response headers --------------------------------------------------------------------


def test_response_headers_filtered() -> None:
    upstream = proxy(
        ("Content-Type", "text/plain"),
        ("Connection", "keep-alive, X-Internal, Content-Length"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("X-Internal", "secret"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Length", "12"),
        ("Upgrade", "h2c"),
        ("Proxy-Authenticate", "Basic"),
    )
    out = build_response_headers(upstream)
    assert list(out.items()) == [
        ("Content-Type", "text/plain"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Length", "12"),
    ]


# --- upgrades ----------------------------------------------------------------------------


def test_websocket_upgrade_detected() -> None:
    headers = proxy(("Connection", "keep-alive, Upgrade"), ("Upgrade", "WebSocket"))
    assert is_websocket_upgrade(headers)
    assert upgrade_protocol(headers) == "websocket"


def test_websocket_upgrade_with_connection_in_second_occurrence() -> None:
    headers = proxy(
        ("Connection", "keep-alive"), ("Connection", "upgrade"), ("Upgrade", "websocket")
    )
    assert is_websocket_upgrade(headers)


def test_h2c_is_not_websocket() -> None:
    headers = proxy(("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"))
    assert not is_websocket_upgrade(headers)
    assert upgrade_protocol(headers) == "h2c"


def test_mixed_upgrade_list_is_not_websocket() -> None:
    headers = proxy(("Connection", "upgrade"), ("Upgrade", "h2c, websocket"))
    assert not is_websocket_upgrade(headers)
    assert upgrade_protocol(headers) == "h2c, websocket"


def test_upgrade_needs_connection_token() -> None:
    assert upgrade_protocol(proxy(("Upgrade", "websocket"))) is None
    assert upgrade_protocol(proxy(("Connection", "upgradex"), ("Upgrade", "websocket"))) is None
    assert upgrade_protocol(proxy(("Connection", "upgrade"))) is None
    assert not is_websocket_upgrade(proxy(("Upgrade", "websocket")))


def test_upgrade_plain_mapping() -> None:
    assert is_websocket_upgrade({"connection": "Upgrade", "UPGRADE": "websocket"})


# --- forwarding headers ------------------------------------------------------------------


def test_set_forwarded_headers_from_chain() -> None:
    out: CIMultiDict[str] = CIMultiDict([("X-Forwarded-For", "stale")])
    set_forwarded_headers(
        out,
        client_ip="203.0.113.7",
        proto="https",
        host="app.example.com",
        prior_chain=["203.0.113.7", "10.0.0.2", "10.0.0.1"],
    )
    assert out.getall("X-Forwarded-For") == ["203.0.113.7, 10.0.0.2, 10.0.0.1"]
    assert out["X-Forwarded-Proto"] == "https"
    assert out["X-Forwarded-Host"] == "app.example.com"


def test_set_forwarded_headers_empty_chain() -> None:
    out: CIMultiDict[str] = CIMultiDict()
    set_forwarded_headers(out, client_ip="198.51.100.1", proto="http", host="h", prior_chain=[])
    assert out["X-Forwarded-For"] == "198.51.100.1"


def test_set_forwarded_headers_rejects_chain_not_starting_at_client() -> None:
    out: CIMultiDict[str] = CIMultiDict()
    with pytest.raises(ValueError, match="client_ip"):
        set_forwarded_headers(
            out, client_ip="1.1.1.1", proto="http", host="h", prior_chain=["2.2.2.2", "1.1.1.1"]
        )


# --- request ids -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "abc-123_X.y:z", "A" * 128, new_request_id()])
def test_valid_request_ids(value: str) -> None:
    assert valid_request_id(value)


@pytest.mark.parametrize(
    "value", [None, "", "A" * 129, "abc\n", "a b", "<script>", "a/b", "ä", "id\r\nX-User-Id: 1"]
)
def test_invalid_request_ids(value: str | None) -> None:
    assert not valid_request_id(value)


def test_new_request_ids_are_unique() -> None:
    assert len({new_request_id() for _ in range(100)}) == 100


@pytest.mark.parametrize(
    "pairs",
    [
        [("Content-Type", "text/plain"), ("Content-Length", "2"), ("X-A", "1")],
        [("Keep-Alive", "timeout=5"), ("Transfer-Encoding", "chunked"), ("X-A", "1")],
        [("Connection", "close, X-Secret"), ("X-Secret", "s"), ("X-A", "1"), ("x-secret", "t")],
        [("Connection", "content-length"), ("Content-Length", "2"), ("Upgrade", "h2c")],
    ],
    ids=["plain", "hop-by-hop", "connection-named", "protected"],
)
def test_response_pairs_agree_with_response_headers(pairs: list[tuple[str, str]]) -> None:
    assert response_pairs(pairs) == list(response_headers(pairs).items())


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["Connection", "X-A", "x-b", "Keep-Alive", "Content-Length", "TE", "Upgrade"]
            ),
            st.sampled_from(["close", "x-a", "X-B, keep-alive", "1", "te"]),
        ),
        max_size=8,
    )
)
def test_response_pairs_match_the_multidict_filter(pairs: list[tuple[str, str]]) -> None:
    assert response_pairs(pairs) == list(response_headers(pairs).items())
