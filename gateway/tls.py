"""TLS for the main listener (certificate reload on change) and toward upstreams (custom CA,
client certificates).

The server context is created once and handed to the listening site; `CertReloader` polls the
certificate and key files and loads a changed pair into that same context, so new handshakes
use the renewed certificate without a restart (connections already open keep theirs). A pair
that does not load (a half-written renewal, a key that does not match) keeps the previous one
and logs why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.config.schema import TlsConfig, Upstream, UpstreamTls

log = logging.getLogger("gateway.tls")

HSTS_HEADER = "Strict-Transport-Security"


class TlsError(OSError):
    """A certificate, key or CA file that cannot be used; the message names the file, never
    its content. An OSError, so start-up reports it as one line like any listener failure."""


def _stat_key(path: Path) -> tuple[int, int, int]:
    """What changes when a file is replaced or rewritten (inode, size, mtime in ns)."""
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def new_server_context() -> ssl.SSLContext:
    """A server context with modern defaults: TLS 1.2+, no compression, no renegotiation."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # SECURITY: TLS 1.0/1.1 are deprecated (RFC 8996); compression enables CRIME.
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def load_pair(ctx: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    """Loads a certificate chain and its key into `ctx`; TlsError when they do not load."""
    try:
        ctx.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    except FileNotFoundError as exc:
        raise TlsError(f"tls: {exc.filename or cert_file} does not exist") from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        # SECURITY: name the files and the kind of failure only; never the key material.
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise TlsError(f"tls: cannot load {cert_file} / {key_file} ({reason})") from None


@dataclass
class CertReloader:
    """Keeps a server context's certificate in step with its files."""

    context: ssl.SSLContext
    cert_file: Path
    key_file: Path
    interval: float = 5.0
    reloads: int = 0
    _seen: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None

    def _fingerprint(self) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
        try:
            return _stat_key(self.cert_file), _stat_key(self.key_file)
        except OSError:
            return None

    def load(self) -> None:
        """The first load; raises TlsError so that start-up fails with one clear line."""
        load_pair(self.context, self.cert_file, self.key_file)
        self._seen = self._fingerprint()

    def check(self) -> bool:
        """Reloads when either file changed; True when a new pair was loaded."""
        seen = self._fingerprint()
        if seen is None or seen == self._seen:
            return False
        try:
            # SECURITY: loading into the live context is not atomic (a failed key check leaves
            # the new certificate with the old key, breaking every handshake): vet the pair
            # in a scratch context first.
            load_pair(new_server_context(), self.cert_file, self.key_file)
            load_pair(self.context, self.cert_file, self.key_file)
        except TlsError as exc:
            log.warning("keeping the previous certificate: %s", exc)
            return False
        finally:
            self._seen = seen
        self.reloads += 1
        log.info("reloaded the TLS certificate from %s", self.cert_file)
        return True

    async def run(self) -> None:
        """Polls the files every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            self.check()


def server_context(config: TlsConfig) -> tuple[ssl.SSLContext, CertReloader] | None:
    """The main listener's context and its reloader, or None when TLS is not configured."""
    if config.cert_file is None or config.key_file is None:
        return None
    ctx = new_server_context()
    reloader = CertReloader(ctx, config.cert_file, config.key_file, config.reload_interval)
    reloader.load()
    return ctx, reloader


@contextlib.asynccontextmanager
async def reloading(reloader: CertReloader | None) -> AsyncIterator[None]:
    """Runs the reloader's polling task for the duration of the block."""
    if reloader is None:
        yield
        return
    task = asyncio.create_task(reloader.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def hsts_value(max_age: int) -> str:
    """The Strict-Transport-Security value for `max_age` seconds."""
    return f"max-age={max_age}; includeSubDomains"


def client_context(tls: UpstreamTls | None) -> ssl.SSLContext:
    """A client context for an https upstream: certificate and host name always verified,
    against `ca_file` when given (else the system store), presenting a client certificate
    when configured (mTLS)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls is None:
        return ctx
    if tls.ca_file is not None:
        try:
            # SECURITY: a private CA replaces the system store for this upstream only.
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise TlsError(f"tls: cannot load CA file {tls.ca_file} ({reason})") from None
    if tls.client_cert_file is not None and tls.client_key_file is not None:
        load_pair(ctx, Path(tls.client_cert_file), Path(tls.client_key_file))
    return ctx


def upstream_contexts(upstreams: Sequence[Upstream]) -> Mapping[str, ssl.SSLContext]:
    """A client context per https upstream that configures `tls`, by upstream name.

    Upstreams without `tls` are absent: the forwarder's default (system CAs, verified) applies.
    """
    return {u.name: client_context(u.tls) for u in upstreams if u.tls is not None}
