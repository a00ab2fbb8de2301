"""The upstream keep-alive pool, driven directly against real loopback upstreams.

The aiohttp echo upstream covers well-behaved framing; the raw-socket upstream
(`tests.support.raw_upstream`) sends exactly the bytes each case needs, misbehaving on cue.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from multidict import CIMultiDict
from yarl import URL

from gateway.proxy.conn import HIGH_WATER, UpstreamClosed, UpstreamProtocolError
from gateway.proxy.exchange import Exchange, HeaderInjection, encode_head, request_framing
from gateway.proxy.pool import Origin, UpstreamPool
from tests.support.net import free_port
from tests.support.raw_upstream import Handler, RawConn, respond_always, run_raw_upstream
from tests.support.upstream import EchoUpstream, expected_download_sha256

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Result:
    status: int
    headers: dict[str, str]
    body: bytes
    reused: bool


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    found = UpstreamPool(max_idle=4)
    yield found
    found.close()
    await asyncio.sleep(0)  # let the transports run their close callbacks


async def fetch(
    pool: UpstreamPool,
    url: str,
    method: str = "GET",
    *,
    body: Sequence[bytes] | None = None,
    chunked: bool = False,
    headers: dict[str, str] | None = None,
    read_timeout: float = 5.0,
) -> Result:
    """One exchange through the pool, the whole body read."""
    target = URL(url)
    origin = Origin.of(target)
    hdrs: CIMultiDict[str] = CIMultiDict(headers or {})
    if body is not None and not chunked:
        hdrs["Content-Length"] = str(sum(len(b) for b in body))
    framing, length = request_framing(method, hdrs, body is not None)
    head = encode_head(method, target.raw_path_qs, origin.host_header, hdrs, framing)

    async def stream() -> AsyncIterator[bytes]:
        for piece in body or ():
            yield piece

    opened = pool.opened
    exchange = Exchange(pool, origin)
    try:
        conn = await exchange.start(
            head, method, stream() if body is not None else None, length, (2.0, read_timeout)
        )
        chunks = []
        while chunk := await conn.read_chunk(read_timeout):
            chunks.append(chunk)
    except BaseException:
        exchange.abort()
        raise
    result = Result(conn.status, dict(conn.headers), b"".join(chunks), pool.opened == opened)
    exchange.finish()
    return result


# -- a well-behaved upstream ------------------------------------------------------------------


async def test_content_length_response_and_connection_reuse(
    pool: UpstreamPool, echo_upstream: EchoUpstream
) -> None:
    first = await fetch(pool, f"{echo_upstream.url}/echo/a?x=1")
    second = await fetch(pool, f"{echo_upstream.url}/echo/b")
    assert (first.status, second.status) == (200, 200)
    assert json.loads(first.body)["query_string"] == "x=1"
    assert not first.reused and second.reused
    assert pool.opened == 1


async def test_chunked_response_streams_whole(
    pool: UpstreamPool, echo_upstream: EchoUpstream
) -> None:
    size = 3 * 1024 * 1024 + 17
    result = await fetch(pool, f"{echo_upstream.url}/download/{size}")
    assert "Content-Length" not in result.headers
    assert hashlib.sha256(result.body).hexdigest() == expected_download_sha256(size)
    assert (await fetch(pool, f"{echo_upstream.url}/echo/x")).reused


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_request_bodies_both_framings(
    pool: UpstreamPool, echo_upstream: EchoUpstream, chunked: bool
) -> None:
    pieces = [bytes([i]) * 70_000 for i in range(20)]
    result = await fetch(pool, f"{echo_upstream.url}/upload", "POST", body=pieces, chunked=chunked)
    data = b"".join(pieces)
    assert json.loads(result.body) == {
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert (await fetch(pool, f"{echo_upstream.url}/echo/again")).reused


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses_complete_and_reuse(
    pool: UpstreamPool, echo_upstream: EchoUpstream, status: int
) -> None:
    result = await fetch(pool, f"{echo_upstream.url}/status/{status}")
    assert (result.status, result.body) == (status, b"")
    assert (await fetch(pool, f"{echo_upstream.url}/status/{status}")).reused


async def test_head_ends_at_the_head_and_is_not_reused(
    pool: UpstreamPool, echo_upstream: EchoUpstream
) -> None:
    result = await fetch(pool, f"{echo_upstream.url}/head-test", "HEAD")
    assert result.status == 200 and result.body == b""
    assert int(result.headers["Content-Length"]) > 0
    assert not (await fetch(pool, f"{echo_upstream.url}/echo/x")).reused


async def test_bodiless_post_sends_content_length_zero(
    pool: UpstreamPool, echo_upstream: EchoUpstream
) -> None:
    result = await fetch(pool, f"{echo_upstream.url}/echo/p", "POST")
    sent = {k.lower(): v for k, v in json.loads(result.body)["headers"]}
    assert sent["content-length"] == "0"


async def test_idle_connections_are_bounded(echo_upstream: EchoUpstream) -> None:
    small = UpstreamPool(max_idle=2)
    try:
        await asyncio.gather(*(fetch(small, f"{echo_upstream.url}/slow/0.2") for _ in range(5)))
        assert small.opened == 5
        assert small.idle_count(Origin.of(URL(echo_upstream.url))) == 2
    finally:
        small.close()
        await asyncio.sleep(0)


async def test_connect_refused_is_an_os_error(pool: UpstreamPool) -> None:
    with pytest.raises(ConnectionRefusedError):
        await fetch(pool, f"http://127.0.0.1:{free_port()}/")


def test_crlf_in_a_header_value_is_refused() -> None:
    # SECURITY: a CR/LF in an injected value must never split the upstream request.
    for value in ("a\r\nX-Admin: 1", "a\nb", "a\rb"):
        with pytest.raises(HeaderInjection):
            encode_head("GET", "/", "h", CIMultiDict({"X-Email": value}), None)


def test_framing_choice() -> None:
    assert request_framing("POST", CIMultiDict({"Content-Length": "5"}), True) == (None, 5)
    assert request_framing("POST", CIMultiDict(), True) == ("chunked", None)
    assert request_framing("POST", CIMultiDict(), False) == ("zero", None)
    assert request_framing("GET", CIMultiDict(), False) == (None, None)


# -- a misbehaving upstream ---------------------------------------------------------------------


async def test_interim_100_continue_is_skipped(pool: UpstreamPool) -> None:
    async def handle(conn: RawConn) -> None:
        while await conn.read_request() is not None:
            await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)

    async with run_raw_upstream(handle) as up:
        result = await fetch(pool, up.url + "/", "POST", body=[b"abc"])
        assert (result.status, result.body) == (200, b"ok")
        assert (await fetch(pool, up.url + "/")).reused


async def test_connection_close_is_never_reused(pool: UpstreamPool) -> None:
    response = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"

    async def keep_open(conn: RawConn) -> None:  # ignores its own Connection: close
        while await conn.read_request() is not None:
            await conn.send(response)

    async with run_raw_upstream(keep_open) as up:
        assert (await fetch(pool, up.url + "/")).body == b"ok"
        assert not (await fetch(pool, up.url + "/")).reused
        assert up.connections == 2


async def test_body_until_eof_is_read_and_not_reused(pool: UpstreamPool) -> None:
    async def handle(conn: RawConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\n\r\nto the end")
        conn.close()

    async with run_raw_upstream(handle) as up:
        assert (await fetch(pool, up.url + "/")).body == b"to the end"
        assert up.connections == 1
        assert not (await fetch(pool, up.url + "/")).reused


async def test_close_mid_body_is_an_error(pool: UpstreamPool) -> None:
    async def handle(conn: RawConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..")
        conn.close()

    async with run_raw_upstream(handle) as up:
        with pytest.raises(UpstreamClosed):
            await fetch(pool, up.url + "/")


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
    ids=["bad-chunk-size", "two-lengths", "length-and-chunked", "garbage"],
)
async def test_bad_framing_is_a_protocol_error(pool: UpstreamPool, response: bytes) -> None:
    async with run_raw_upstream(_answer_once(response)) as up:
        with pytest.raises(UpstreamProtocolError):
            await fetch(pool, up.url + "/")


async def test_extra_bytes_after_a_response_forbid_reuse(pool: UpstreamPool) -> None:
    async with run_raw_upstream(_answer_once(OK + OK)) as up:
        assert (await fetch(pool, up.url + "/")).body == b"ok"
        assert not (await fetch(pool, up.url + "/")).reused


async def test_slow_headers_time_out(pool: UpstreamPool) -> None:
    async def silent(conn: RawConn) -> None:
        await conn.read_request()
        await conn.reader.read()  # never answers

    async with run_raw_upstream(silent) as up:
        with pytest.raises(TimeoutError):
            await fetch(pool, up.url + "/", read_timeout=0.2)


def _answer_after(*delays: float) -> Handler:
    """Answers each request `delays[i]` seconds after reading it; silent after the last."""

    async def handle(conn: RawConn) -> None:
        for delay in delays:
            if await conn.read_request() is None:
                return
            await asyncio.sleep(delay)  # the upstream's own slowness: the fault under test
            await conn.send(OK)
        await conn.read_request()
        await conn.reader.read()  # never answers

    return handle


async def test_an_early_timer_does_not_end_a_wait_before_its_deadline(
    pool: UpstreamPool,
) -> None:
    # The timer armed for the first wait (at +0.4 s) fires while the second is pending
    # (its deadline at +0.6 s): it must move on to that deadline, not time the wait out.
    async with run_raw_upstream(_answer_after(0.2, 0.3)) as up:
        url = up.url + "/"
        assert (await fetch(pool, url, read_timeout=0.4)).body == b"ok"
        second = await fetch(pool, url, read_timeout=0.4)
        assert (second.body, second.reused) == (b"ok", True)


async def test_an_early_timer_still_times_the_pending_wait_out(pool: UpstreamPool) -> None:
    # Same timeline, but the second request is never answered: it must time out about
    # 0.4 s after it started (not when the first wait's timer fires, and not never).
    async with run_raw_upstream(_answer_after(0.2)) as up:
        url = up.url + "/"
        assert (await fetch(pool, url, read_timeout=0.4)).body == b"ok"
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(5):  # a lost deadline fails here instead of hanging
            with pytest.raises(TimeoutError):
                await fetch(pool, url, read_timeout=0.4)
        assert 0.35 <= loop.time() - started < 2.0
        assert up.connections == 1


async def test_a_shorter_read_deadline_replaces_a_later_timer(pool: UpstreamPool) -> None:
    async with run_raw_upstream(_answer_after(0.0)) as up:
        url = up.url + "/"
        assert (await fetch(pool, url, read_timeout=30.0)).body == b"ok"  # timer at +30 s
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(5):
            with pytest.raises(TimeoutError):
                await fetch(pool, url, read_timeout=0.2)
        assert loop.time() - started < 2.0
        assert up.connections == 1


async def _answer_then_drop(conn: RawConn) -> None:
    """Answers the first request, takes the second and closes without answering (the race
    of an upstream closing an idle keep-alive connection just as it is reused)."""
    await conn.read_request()
    await conn.send(OK)
    await conn.read_request()
    conn.close()


async def test_stale_idle_connection_is_retried_once_for_get(pool: UpstreamPool) -> None:
    async with run_raw_upstream(_answer_then_drop) as up:
        await fetch(pool, up.url + "/")
        result = await fetch(pool, up.url + "/")
        assert result.body == b"ok"
        assert up.connections == 2
        assert len(up.requests) == 3  # the GET was sent twice


async def test_stale_idle_connection_is_not_retried_for_a_body(pool: UpstreamPool) -> None:
    async with run_raw_upstream(_answer_then_drop) as up:
        await fetch(pool, up.url + "/", "POST", body=[b"one"])
        with pytest.raises(UpstreamClosed):
            await fetch(pool, up.url + "/", "POST", body=[b"two"])
        assert up.connections == 1


async def test_response_reading_applies_back_pressure(pool: UpstreamPool) -> None:
    size = 8 * 1024 * 1024
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size
    async with run_raw_upstream(_answer_once(head + b"x" * size)) as up:
        origin = Origin.of(URL(up.url))
        exchange = Exchange(pool, origin)
        conn = await exchange.start(
            encode_head("GET", "/", origin.host_header, CIMultiDict(), None),
            "GET",
            None,
            None,
            (2.0, 5.0),
        )
        peak = total = 0
        while chunk := await conn.read_chunk(5.0):
            total += len(chunk)
            peak = max(peak, conn.buffered)
            await asyncio.sleep(0)
        exchange.finish()
    assert total == size
    assert peak < HIGH_WATER + 512 * 1024


def _answer_once(response: bytes, *, keep_open: bool = True):  # type: ignore[no-untyped-def]
    async def handle(conn: RawConn) -> None:
        await conn.read_request()
        await conn.send(response)
        if keep_open:
            await conn.reader.read()
        conn.close()

    return handle


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting only this server's throwaway certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    return server, ssl.create_default_context(cafile=str(cert_path))


async def test_https_upstream_over_verified_tls(tmp_path: Path) -> None:
    server, client = _self_signed(tmp_path)
    tls_pool = UpstreamPool(ssl_context=client)
    try:
        async with run_raw_upstream(respond_always(OK), ssl_context=server) as up:
            url = f"https://127.0.0.1:{up.port}/"
            assert (await fetch(tls_pool, url)).body == b"ok"
            assert (await fetch(tls_pool, url)).reused
            untrusting = UpstreamPool()  # the system's CAs do not know this certificate
            with pytest.raises(ssl.SSLCertVerificationError):
                await fetch(untrusting, url)
            untrusting.close()
    finally:
        tls_pool.close()
        await asyncio.sleep(0)
