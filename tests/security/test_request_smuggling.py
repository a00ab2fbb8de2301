"""Request smuggling and framing tricks against the real `gateway serve` process.

tests/e2e/test_proxy.py already pins CL+TE, two differing or equal Content-Lengths, obs-fold,
a non-hex chunk size, `gzip, chunked` and two Host headers. This module adds the variants that
broke peers since: every case must be refused before anything reaches the upstream (or, for
the legal ones, reach it as exactly one request with exactly the intended body), without
echoing request bytes, and the gateway must keep serving.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import AuthEnv
from tests.e2e.test_authorization import gateway_env
from tests.security.harness import assert_no_leak, head, requests_with, send
from tests.support.net import parse_response, raw_request

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AuthEnv]:
    """`base_config` makes `/public/*` public; the echo upstream records every request."""
    async with gateway_env(tmp_path_factory.mktemp("smuggling")) as env:
        yield env


def framing(env: AuthEnv, lines: str, body: str = "", target: str = "/public/smuggle") -> bytes:
    """A POST to a public path with these header lines (each ending in CRLF) and body."""
    return (
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{env.gw.port}\r\n{lines}\r\n{body}"
    ).encode()


# Each entry: (id, raw request builder input). Sources in the comments.
REFUSED_FRAMING: list[tuple[str, str, str]] = [
    # "TE.TE" obfuscation (PortSwigger's HTTP desync research; Envoy, Traefik and Caddy
    # hardening): a coding list ending in something other than chunked must not be accepted.
    ("te-chunked-identity", "Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"),
    # A lone `identity` (removed from HTTP/1.1 by RFC 7230) treated as "no body" by one hop
    # and as chunked/close-delimited by the next.
    ("te-identity", "Transfer-Encoding: identity\r\nContent-Length: 3\r\n", "abc"),
    # Duplicate TE lines: one hop joins them, another takes the first (Envoy and Traefik
    # advisories on TE handling; RFC 9112 §6.3).
    ("te-twice", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
    # `xchunked` / `chunked-false`: a substring match accepts it as chunked (classic TE.TE).
    ("te-xchunked", "Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"),
    # Whitespace before the colon: RFC 9112 §5.1 says a server MUST reject it; lenient
    # parsers strip it and see a TE the front end ignored (aiohttp CVE-2023-47627 class).
    ("space-before-colon-te", "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"),
    ("space-before-colon-cl", "Content-Length : 5\r\n", "hello"),
    # Vertical tab / form feed as "whitespace" around a TE value (TE.TE obfuscation).
    ("te-vertical-tab", "Transfer-Encoding:\x0bchunked\r\n", "0\r\n\r\n"),
    # Content-Length with a sign, a list, or hex: `int()` accepts "+5" (aiohttp's lenient
    # Python parser, CVE-2024-23829 class); RFC 9110 §8.6 is 1*DIGIT only.
    ("cl-plus-sign", "Content-Length: +5\r\n", "hello"),
    ("cl-list", "Content-Length: 5, 5\r\n", "hello"),
    ("cl-hex", "Content-Length: 0x5\r\n", "hello"),
    ("cl-negative", "Content-Length: -1\r\n", ""),
    # Chunk sizes other parsers read differently: sign, 0x prefix, overflow, underscore
    # (aiohttp's Python parser accepted `+`/`_` through int(..., 16): CVE-2024-23829 class).
    ("chunk-size-plus", "Transfer-Encoding: chunked\r\n", "+5\r\nhello\r\n0\r\n\r\n"),
    ("chunk-size-0x", "Transfer-Encoding: chunked\r\n", "0x5\r\nhello\r\n0\r\n\r\n"),
    ("chunk-size-underscore", "Transfer-Encoding: chunked\r\n", "0_5\r\nhello\r\n0\r\n\r\n"),
    ("chunk-size-negative", "Transfer-Encoding: chunked\r\n", "-5\r\nhello\r\n0\r\n\r\n"),
    (
        "chunk-size-overflow",
        "Transfer-Encoding: chunked\r\n",
        "10000000000000000005\r\nhello\r\n0\r\n\r\n",
    ),
    # A chunk longer than its declared size: the excess would be a smuggled request to a
    # parser that trusts the CRLF rather than the size.
    ("chunk-data-overrun", "Transfer-Encoding: chunked\r\n", "3\r\nhello\r\n0\r\n\r\n"),
    # Bare LF inside a chunk extension (aiohttp CVE-2024-52304, Kestrel CVE-2025-55315, Go
    # CVE-2025-22871): the front end and the app split the chunk line differently.
    ("chunk-ext-bare-lf", "Transfer-Encoding: chunked\r\n", "5;a\nb\r\nhello\r\n0\r\n\r\n"),
    # NUL in a header value: C-string based upstreams truncate at it (RFC 9110 §5.5 forbids it).
    ("nul-in-header-value", "Content-Length: 0\r\nX-Note: a\x00b\r\n", ""),
    # A header name with a space or a non-token character smuggles a second reading.
    ("space-in-header-name", "Content-Length: 0\r\nX Note: a\r\n", ""),
    ("bad-char-in-header-name", 'Content-Length: 0\r\nX"Note: a\r\n', ""),
]


@pytest.mark.parametrize(
    ("lines", "body"),
    [pytest.param(lines, body, id=case) for case, lines, body in REFUSED_FRAMING],
)
async def test_ambiguous_framing_is_refused_before_the_upstream(
    env: AuthEnv, lines: str, body: str
) -> None:
    marker = uuid.uuid4().hex
    data = framing(env, lines, body, target=f"/public/{marker}")
    status, parsed, raw = await send(env, data)
    assert status == 400, raw[:300]
    assert parsed is not None and parsed["error"]["code"] in ("bad-framing", "bad-request")
    assert not requests_with(env, marker), "a refused request reached the upstream"
    assert_no_leak(raw, "\x00", "X Note")


async def test_te_in_http10_request_is_not_treated_as_chunked(env: AuthEnv) -> None:
    """RFC 9112 §6.1: TE in an HTTP/1.0 request means faulty framing (a 1.0 hop ignores it
    and reads the chunked body as the next request). Source: HTTP desync research
    (PortSwigger, 2019) and the Envoy/Traefik HTTP/1.0 TE fixes."""
    marker = uuid.uuid4().hex
    data = (
        f"POST /public/{marker} HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        f"0\r\n\r\nGET /public/{marker}-smuggled HTTP/1.0\r\n\r\n"
    ).encode()
    raw = await raw_request(env.gw.host, env.gw.port, data)
    assert not requests_with(env, f"{marker}-smuggled"), "a smuggled request got through"
    if raw:
        status, _, _ = parse_response(raw)
        assert status == 400, raw[:300]


async def test_lf_only_line_endings_never_split_into_two_requests(env: AuthEnv) -> None:
    """Bare LF as a line terminator (RFC 9112 §2.2 allows a recipient to accept it, but two
    hops that disagree desync: the llhttp/aiohttp CVE-2023-37276 class of CR/LF leniency).
    Whatever the gateway does, the upstream never sees a second request."""
    marker = uuid.uuid4().hex
    data = (
        f"GET /public/{marker} HTTP/1.1\nHost: x\nX-A: 1\rGET /public/{marker}-smuggled "
        "HTTP/1.1\nConnection: close\n\n"
    ).encode()
    raw = await raw_request(env.gw.host, env.gw.port, data, read_timeout=3)
    assert not requests_with(env, f"{marker}-smuggled")
    assert_no_leak(raw)


async def test_plain_lf_request_is_refused_or_served_as_one(env: AuthEnv) -> None:
    """Source: llhttp line-terminator leniency (aiohttp CVE-2023-37276 class): an LF-only head
    is either refused or parsed as exactly the one request written."""
    marker = uuid.uuid4().hex
    data = f"GET /public/{marker} HTTP/1.1\nHost: x\nConnection: close\n\n".encode()
    raw = await raw_request(env.gw.host, env.gw.port, data, read_timeout=3)
    if raw:
        status, _, _ = parse_response(raw)
        assert status in (200, 400)
        assert len(requests_with(env, marker)) == (1 if status == 200 else 0)


async def test_legal_chunk_extensions_are_dropped_not_forwarded(env: AuthEnv) -> None:
    """Chunk extensions are legal (RFC 9112 §7.1.1) but not meant for the next hop; the body
    arrives re-framed, extension-free and intact. Source: aiohttp CVE-2024-52304 (extension
    parsing) and the re-framing every proxy must do per hop."""
    marker = uuid.uuid4().hex
    data = framing(
        env,
        "Transfer-Encoding: chunked\r\nConnection: close\r\n",
        '5;name="va;lue"\r\nhello\r\n6;x\r\n world\r\n0\r\n\r\n',
        target=f"/public/{marker}",
    )
    status, _parsed, raw = await send(env, data)
    assert status == 200, raw[:300]
    (record,) = requests_with(env, marker)
    assert record["body_len"] == 11
    assert b"va;lue" not in raw


async def test_trailers_cannot_carry_identity_headers(env: AuthEnv) -> None:
    """A trailer section is merged into headers by some proxies (the class of trailer-merging
    bugs in proxies; RFC 9110 §6.5.1 forbids trailers that affect routing or auth):
    `X-User-Id` in a trailer never reaches the upstream."""
    marker = uuid.uuid4().hex
    data = framing(
        env,
        "Transfer-Encoding: chunked\r\nTrailer: X-User-Id\r\nConnection: close\r\n",
        "5\r\nhello\r\n0\r\nX-User-Id: u_forged\r\nX-Auth-Method: session\r\n\r\n",
        target=f"/public/{marker}",
    )
    status, _, raw = await send(env, data)
    assert status in (200, 400), raw[:300]
    for record in requests_with(env, marker):
        names = {k.lower() for k, _ in record["headers"]}
        assert "x-user-id" not in names
        assert "x-auth-method" not in names
        assert "u_forged" not in json.dumps(record)


async def test_request_hidden_in_a_body_is_never_a_second_request(env: AuthEnv) -> None:
    """CL-framed body that holds a whole second request (the CL.0 / "client-side desync"
    pattern): the upstream sees one request whose body is those bytes, never two requests."""
    marker = uuid.uuid4().hex
    inner = f"GET /admin/{marker}-smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    data = framing(
        env,
        f"Content-Length: {len(inner)}\r\nConnection: close\r\n",
        inner,
        target=f"/public/{marker}",
    )
    status, _, _ = await send(env, data)
    assert status == 200
    assert [r["path"] for r in requests_with(env, marker)] == [f"/public/{marker}"]


async def test_pipelined_requests_are_each_vetted(env: AuthEnv) -> None:
    """Two requests in one packet: the second (protected) one is decided on its own, never
    tunnelled behind the first (public) one. Source: Traefik/Caddy pipelining desyncs."""
    marker = uuid.uuid4().hex
    data = (
        f"GET /public/{marker} HTTP/1.1\r\nHost: x\r\n\r\n"
        f"GET /private/{marker} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ).encode()
    raw = await raw_request(env.gw.host, env.gw.port, data)
    assert raw.count(b"HTTP/1.1 200") == 1
    assert b"HTTP/1.1 401" in raw
    assert [r["path"] for r in requests_with(env, marker)] == [f"/public/{marker}"]


@pytest.mark.parametrize(
    "target",
    [
        # Absolute-form naming another authority than Host (RFC 9112 §3.2.2: the authority
        # wins). Source: the host-confusion class fixed in several auth proxies:
        # routing by Host while the upstream routes by the target (host-confusion class).
        "http://evil.example/public/{m}",
        "https://evil.example:444/public/{m}",
        # Authority-form and asterisk-form are only for CONNECT/OPTIONS.
        "evil.example:80",
        "*",
    ],
    ids=["absolute-other-host", "absolute-https-other-port", "authority-form", "asterisk"],
)
async def test_odd_request_targets_never_redirect_the_upstream(env: AuthEnv, target: str) -> None:
    marker = uuid.uuid4().hex
    status, _, raw = await send(env, head(env, target.format(m=marker)))
    assert status in (200, 400, 404), raw[:300]
    for record in requests_with(env, marker):
        seen = {k.lower(): v for k, v in record["headers"]}
        # The upstream gets a path, never a foreign authority to route on.
        assert record["path"].startswith("/public/")
        assert "evil.example" not in seen.get("host", "")
        assert "evil.example" not in seen.get("x-forwarded-host", "")


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("GET /public/{m}\r\n\r\n", id="http09"),
        pytest.param("GET /public/{m} HTTP/1.1.1\r\nHost: x\r\n\r\n", id="version-1.1.1"),
        pytest.param("GET /public/{m} HTTP/2.0\r\nHost: x\r\n\r\n", id="version-2.0"),
        pytest.param("GET /public/{m} HTTP/1.1 \r\nHost: x\r\n\r\n", id="trailing-space"),
        pytest.param("GET /public/{m} http/1.1\r\nHost: x\r\n\r\n", id="lowercase"),
    ],
)
async def test_garbage_request_lines_get_no_upstream_call(env: AuthEnv, line: str) -> None:
    """HTTP/0.9 simple requests and broken versions or request lines (aiohttp
    CVE-2024-23829 class: lenient request-line parsing lets two hops disagree)."""
    marker = uuid.uuid4().hex
    raw = await raw_request(env.gw.host, env.gw.port, line.format(m=marker).encode(), 2)
    assert_no_leak(raw)
    if raw:
        status, _, _ = parse_response(raw)
        assert status in (400, 505), raw[:200]
    assert not requests_with(env, marker)


async def test_gateway_keeps_serving_after_every_framing_attack(env: AuthEnv) -> None:
    """The gateway never crashes on bad input (contract, Failure behaviour)."""
    async with aiohttp.ClientSession() as http:
        results = await asyncio.gather(*(http.get(f"{env.url}/public/alive-{i}") for i in range(5)))
        for resp in results:
            assert resp.status == 200
            resp.release()
