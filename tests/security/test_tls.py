"""TLS termination on the main listener, HSTS, certificate reload, and TLS toward upstreams.

Certificates are generated per test run (tests/security/certs.py); nothing is read from disk
that the test did not write.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.config.schema import UpstreamTls
from gateway.tls import TlsError, client_context, new_server_context, upstream_contexts
from tests.e2e.test_authorization import gateway_env
from tests.security.certs import Issued, issue, make_ca
from tests.support.gateway_proc import (
    base_config,
    front_handoffs,
    gateway_command,
    stop_process,
)
from tests.support.net import free_port
from tests.support.upstream import EchoUpstream, run_echo_upstream

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


class TlsGateway:
    def __init__(
        self, proc: asyncio.subprocess.Process, port: int, workdir: Path, metrics_port: int
    ) -> None:
        self.proc, self.port, self.workdir = proc, port, workdir
        self.metrics_port = metrics_port

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return (self.workdir / "gateway.log").read_text(errors="replace")


@contextlib.asynccontextmanager
async def run_tls_gateway(
    workdir: Path, config: dict[str, Any], trust: ssl.SSLContext
) -> AsyncIterator[TlsGateway]:
    """`gateway serve` with `config`; ready once /.gateway/healthz answers over HTTPS."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    with (workdir / "gateway.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *gateway_command("serve", "--config", str(path)),
            cwd=workdir, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    metrics_port = int(config["metrics"]["listen"].rsplit(":", 1)[1])
    gw = TlsGateway(proc, int(config["listen"].rsplit(":", 1)[1]), workdir, metrics_port)
    try:
        await _wait_https(gw, trust)
        yield gw
    finally:
        await stop_process(proc)


async def _wait_https(gw: TlsGateway, trust: ssl.SSLContext, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.01
    async with aiohttp.ClientSession() as http:
        while True:
            if gw.proc.returncode is not None:
                raise RuntimeError(f"gateway exited:\n{gw.logs()}")
            try:
                async with http.get(f"{gw.url}/.gateway/healthz", ssl=trust) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, OSError):
                pass
            if loop.time() > deadline:
                raise TimeoutError(gw.logs())
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)


def trusting(ca: Issued) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cadata=ca.cert.public_bytes(serialization.Encoding.PEM).decode())
    return ctx


async def peer_serial(port: int, trust: ssl.SSLContext) -> int:
    """The serial number of the certificate a fresh handshake presents."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trust)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


class Setup:
    def __init__(
        self, gw: TlsGateway, ca: Issued, leaf: Issued, files: tuple[Path, Path], up: EchoUpstream
    ) -> None:
        self.gw, self.ca, self.leaf, self.files, self.upstream = gw, ca, leaf, files, up
        self.trust = trusting(ca)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tls_setup(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Setup]:
    workdir = tmp_path_factory.mktemp("tls")
    ca = make_ca()
    leaf = issue(ca, "gateway-1")
    cert_file, key_file = leaf.write(workdir / "certs", "server")
    async with run_echo_upstream() as upstream:
        config = base_config(upstream.url, workdir)
        config["tls"] = {
            "cert_file": str(cert_file),
            "key_file": str(key_file),
            "reload_interval": 0.1,
        }
        config["rate_limits"] = {"defaults": False}
        async with run_tls_gateway(workdir, config, trusting(ca)) as gw:
            yield Setup(gw, ca, leaf, (cert_file, key_file), upstream)


async def test_tls_listener_serves_https_and_sends_hsts(tls_setup: Setup) -> None:
    """HSTS on every answer over TLS, the gateway's own and the proxied ones (oauth2-proxy
    and Caddy ship HSTS with TLS; without it a first plain-HTTP visit can be stripped)."""
    async with aiohttp.ClientSession() as http:
        for path in ("/.gateway/healthz", "/public/x", "/private"):
            async with http.get(f"{tls_setup.gw.url}{path}", ssl=tls_setup.trust) as resp:
                assert resp.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        records = [r for r in tls_setup.upstream.requests if r["path"] == "/public/x"]
        assert records
        forwarded = {k.lower(): v for k, v in records[-1]["headers"]}
        assert forwarded["x-forwarded-proto"] == "https"


async def test_fresh_tls_connections_get_hsts_from_the_fast_path_too(tls_setup: Setup) -> None:
    """One connection per request: proxied paths are answered by the fast front over TLS, with
    HSTS and `X-Forwarded-Proto: https` (no connection is handed off to aiohttp)."""
    before = await front_handoffs(tls_setup.gw.metrics_port)
    for path in ("/public/y", "/private"):
        connector = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.get(f"{tls_setup.gw.url}{path}", ssl=tls_setup.trust) as resp,
        ):
            assert resp.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert await front_handoffs(tls_setup.gw.metrics_port) == before, "fast front expected"
    records = [r for r in tls_setup.upstream.requests if r["path"] == "/public/y"]
    forwarded = {k.lower(): v for k, v in records[-1]["headers"]}
    assert forwarded["x-forwarded-proto"] == "https"


async def test_plain_http_on_the_tls_port_is_not_served(tls_setup: Setup) -> None:
    """A plaintext request to the TLS port must not be answered as HTTP (downgrade)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_setup.gw.port)
    writer.write(b"GET /public/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert not data.startswith(b"HTTP/1.1 200")


async def test_legacy_tls_versions_are_refused(tls_setup: Setup) -> None:
    """RFC 8996: TLS 1.0 and 1.1 are deprecated; the listener offers 1.2 at least."""
    ctx = trusting(tls_setup.ca)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    assert await peer_serial(tls_setup.gw.port, ctx) == tls_setup.leaf.cert.serial_number
    assert new_server_context().minimum_version == ssl.TLSVersion.TLSv1_2


async def test_hsts_is_never_sent_over_plain_http(tmp_path_factory: pytest.TempPathFactory) -> None:
    """RFC 6797 §7.2: HSTS over plain HTTP is ignored and misleading; only the TLS listener."""
    async with (
        gateway_env(tmp_path_factory.mktemp("plain")) as env,
        aiohttp.ClientSession() as http,
    ):
        for path in ("/.gateway/healthz", "/public/x"):
            async with http.get(f"{env.url}{path}") as resp:
                assert "Strict-Transport-Security" not in resp.headers


async def _serial_becomes(port: int, trust: ssl.SSLContext, serial: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while await peer_serial(port, trust) != serial:
        assert loop.time() < deadline, "the renewed certificate was never served"
        await asyncio.sleep(0.05)


async def test_certificate_is_reloaded_when_the_files_change(tls_setup: Setup) -> None:
    """Renewal without restart (Caddy/Traefik reload certificates on change); a broken
    renewal (key not matching) keeps the previous certificate instead of failing closed on
    every handshake."""
    port, trust = tls_setup.gw.port, tls_setup.trust
    assert await peer_serial(port, trust) == tls_setup.leaf.cert.serial_number
    renewed = issue(tls_setup.ca, "gateway-2")
    cert_file, key_file = tls_setup.files
    staging = cert_file.parent / "staging"
    new_cert, new_key = renewed.write(staging, "server")
    os.replace(new_key, key_file)
    os.replace(new_cert, cert_file)
    await _serial_becomes(port, trust, renewed.cert.serial_number)
    # A mismatched pair (a half-finished renewal) is refused; the last good one stays.
    other = issue(tls_setup.ca, "gateway-3")
    bad_cert, _ = other.write(staging, "bad")
    os.replace(bad_cert, cert_file)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while "keeping the previous certificate" not in tls_setup.gw.logs():
        assert loop.time() < deadline, tls_setup.gw.logs()[-2000:]
        await asyncio.sleep(0.05)
    assert await peer_serial(port, trust) == renewed.cert.serial_number


# ---------------------------------------------------------------------------------------
# Toward upstreams: custom CA and client certificates (mTLS)
# ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def mtls_upstream(ca: Issued, workdir: Path) -> AsyncIterator[int]:
    """An HTTPS upstream (certificate from `ca`) that requires a client certificate of `ca`."""
    server = issue(ca, "upstream")
    cert_file, key_file = server.write(workdir, "upstream")
    ca_file = workdir / "ca.pem"
    ca_file.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca_file))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(cert_file), str(key_file))

    async def hello(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(x[0] for x in peer["subject"]) if peer else {}
        return web.json_response({"client": subject.get("commonName")})

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx)
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def test_client_context_presents_the_client_certificate_to_a_custom_ca_upstream(
    tmp_path: Path,
) -> None:
    ca = make_ca("upstream CA")
    client_cert, client_key = issue(ca, "gateway-client", client=True).write(tmp_path, "client")
    async with mtls_upstream(ca, tmp_path) as port, aiohttp.ClientSession() as http:
        url = f"https://127.0.0.1:{port}/x"
        tls = UpstreamTls(
            ca_file=str(tmp_path / "ca.pem"),
            client_cert_file=str(client_cert),
            client_key_file=str(client_key),
        )
        async with http.get(url, ssl=client_context(tls)) as resp:
            assert await resp.json() == {"client": "gateway-client"}
        # Without the client certificate the upstream refuses the handshake.
        with pytest.raises(aiohttp.ClientError):
            async with http.get(url, ssl=client_context(UpstreamTls(ca_file=tls.ca_file))):
                pass
        # The system store does not trust the private CA: verification is never skipped.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.get(url, ssl=client_context(None)):
                pass


async def test_client_context_refuses_a_certificate_from_another_ca(tmp_path: Path) -> None:
    """A custom CA replaces, not extends, trust: an upstream impersonated with a certificate
    from another CA is refused (MITM between gateway and upstream)."""
    real, rogue = make_ca("real CA"), make_ca("rogue CA")
    client_cert, client_key = issue(rogue, "c", client=True).write(tmp_path / "c", "client")
    real_ca = tmp_path / "real-ca.pem"
    real_ca.write_bytes(real.cert.public_bytes(serialization.Encoding.PEM))
    async with mtls_upstream(rogue, tmp_path / "u") as port, aiohttp.ClientSession() as http:
        tls = UpstreamTls(
            ca_file=str(real_ca), client_cert_file=str(client_cert), client_key_file=str(client_key)
        )
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.get(f"https://127.0.0.1:{port}/x", ssl=client_context(tls)):
                pass


async def test_unreadable_tls_material_is_one_clear_error(tmp_path: Path) -> None:
    """Errors name the file, never its content (no key material in logs)."""
    secret = tmp_path / "key.pem"
    secret.write_text("-----BEGIN PRIVATE KEY-----\nTOPSECRET\n-----END PRIVATE KEY-----\n")
    tls = UpstreamTls(ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(TlsError) as info:
        client_context(tls)
    assert "missing.pem" in str(info.value)
    tls = UpstreamTls(client_cert_file=str(secret), client_key_file=str(secret))
    with pytest.raises(TlsError) as info:
        client_context(tls)
    assert "TOPSECRET" not in str(info.value)


async def test_upstream_contexts_only_for_upstreams_with_tls() -> None:
    from gateway.config.schema import Upstream

    ups = [
        Upstream(name="plain", url="http://127.0.0.1:1"),
        Upstream(name="secure", url="https://127.0.0.1:2", tls=UpstreamTls()),
    ]
    contexts = upstream_contexts(ups)
    assert set(contexts) == {"secure"}
    assert contexts["secure"].verify_mode == ssl.CERT_REQUIRED
    assert contexts["secure"].check_hostname


async def test_gateway_reaches_an_mtls_upstream_with_its_client_certificate(
    tmp_path: Path,
) -> None:
    ca = make_ca("upstream CA")
    client_cert, client_key = issue(ca, "gateway-client", client=True).write(tmp_path, "client")
    async with mtls_upstream(ca, tmp_path) as port:
        secure = {
            "name": "secure",
            "url": f"https://127.0.0.1:{port}",
            "match": {"path_prefix": "/mtls"},
            "public_paths": ["/mtls/*"],
            "tls": {
                "ca_file": str(tmp_path / "ca.pem"),
                "client_cert_file": str(client_cert),
                "client_key_file": str(client_key),
            },
        }
        async with (
            gateway_env(tmp_path / "gw", upstreams=[secure]) as env,
            aiohttp.ClientSession() as http,
            http.get(f"{env.url}/mtls/x") as resp,
        ):
            assert resp.status == 200
            assert await resp.json() == {"client": "gateway-client"}
