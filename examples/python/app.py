"""A tiny app behind the gateway that trusts only the gateway's signed assertion.

Copy this file into your own project: it needs Python 3.11+ and `pyjwt[crypto]`, nothing
else (the HTTP server is the standard library's).

    GATEWAY_JWKS_URL=http://127.0.0.1:8080/.gateway/jwks.json \
    GATEWAY_AUDIENCE=default PORT=8000 python app.py

Every request must carry `X-Gateway-Assertion`: a short-lived JWT the gateway signs with
Ed25519 (EdDSA) for this app (`aud` = the route's upstream name). The app checks it on EVERY
request and answers 401 JSON without it.

Why not simply read `X-User-Id`, `X-Tenant-Id`, `X-User-Roles` ...? The gateway removes every
client copy of those headers and sets its own, so behind the gateway they are right. But
they are plain text: anyone who can reach this port WITHOUT going through the gateway (another
container on the same network, a misconfigured load balancer, a port published by mistake,
an SSRF in a neighbouring service) can send `X-User-Roles: admin` and be believed. Trust the
plain headers only if the network guarantees that nothing but the gateway can connect here
(a Unix socket, a loopback-only bind in the same pod, a network policy). The assertion has no
such precondition: only the holder of the gateway's private key can produce one, it names
this app as its audience (a token minted for another app is refused here), and it expires
within a minute.

Environment:
    GATEWAY_JWKS_URL        the gateway's `/.gateway/jwks.json` (required to serve)
    GATEWAY_AUDIENCE        this app's upstream name in the gateway config (`default` with
                            `gateway serve --upstream URL`)
    GATEWAY_ISSUER          the expected `iss` (default "gateway"; the gateway's public_url
                            when it has one)
    GATEWAY_JWKS_MIN_REFETCH_SECONDS
                            at most one JWKS fetch per this many seconds (default 30)
    HOST, PORT              where to listen (default 127.0.0.1:8000)
"""

from __future__ import annotations

import html
import http.client
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import jwt

ASSERTION_HEADER = "X-Gateway-Assertion"
ALGORITHM = "EdDSA"  # the only algorithm accepted: never "none", never HS*, never from the token
LEEWAY_SECONDS = 5  # tolerated clock skew between the gateway and this app
MAX_LIFETIME_SECONDS = 60  # the gateway's assertions live at most a minute
MAX_JWKS_BYTES = 64 * 1024


class InvalidAssertion(Exception):
    """The assertion is missing or invalid; `code` is a short machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class JwksUnavailable(Exception):
    """The gateway's key set could not be fetched (and none is cached)."""


KeyLookup = Callable[[str], Any]
"""Returns the public key for a `kid`, or None when the gateway does not publish that kid."""


def verify_assertion(
    token: str | None,
    key_for: KeyLookup,
    *,
    audience: str,
    issuer: str = "gateway",
    leeway: float = LEEWAY_SECONDS,
) -> dict[str, Any]:
    """Verifies one `X-Gateway-Assertion` value and returns its claims, or raises.

    The order matters: the header is only used to pick a key by `kid` and to refuse any
    algorithm but EdDSA before the signature is checked; no claim is read before the signature
    over it was verified.
    """
    if not token:
        raise InvalidAssertion("assertion-missing", f"{ASSERTION_HEADER} is required")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidAssertion("assertion-malformed", "the assertion is not a JWT") from exc
    if header.get("alg") != ALGORITHM:
        raise InvalidAssertion("assertion-algorithm", "the assertion must be signed with EdDSA")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidAssertion("assertion-kid", "the assertion names no key (kid)")
    key = key_for(kid)
    if key is None:
        raise InvalidAssertion("assertion-kid", "the assertion's key is not published")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidAssertion("assertion-expired", "the assertion has expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidAssertion("assertion-invalid", f"the assertion is invalid: {exc}") from exc
    if claims["iat"] > time.time() + leeway:
        raise InvalidAssertion("assertion-invalid", "the assertion was issued in the future")
    if claims["exp"] - claims["iat"] > MAX_LIFETIME_SECONDS:
        raise InvalidAssertion("assertion-invalid", "the assertion lives longer than allowed")
    tenant = claims.get("tenant")
    if not (
        isinstance(tenant, dict)
        and isinstance(tenant.get("id"), str)
        and isinstance(tenant.get("slug"), str)
        and isinstance(claims.get("roles"), list)
        and all(isinstance(role, str) for role in claims["roles"])
    ):
        raise InvalidAssertion("assertion-invalid", "the assertion lacks tenant or roles")
    return claims


def keys_from_jwks(document: Mapping[str, Any]) -> dict[str, Any]:
    """The Ed25519 signing keys of a JWKS document, by kid; anything else is ignored."""
    keys: dict[str, Any] = {}
    for jwk in document.get("keys", []):
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        if jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig":
            continue
        try:
            keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm=ALGORITHM).key
        except jwt.PyJWTError:
            continue
    return keys


def fetch_json(url: str, timeout: float = 5.0) -> tuple[dict[str, Any], int | None]:
    """GETs a JSON document; returns it and the `max-age` of its Cache-Control, if any."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.netloc, timeout=timeout
        )
    elif parts.scheme == "http":
        conn = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    else:
        raise JwksUnavailable(f"unsupported JWKS URL scheme: {parts.scheme!r}")
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read(MAX_JWKS_BYTES + 1)
        if resp.status != 200 or len(body) > MAX_JWKS_BYTES:
            raise JwksUnavailable(f"JWKS fetch answered {resp.status}")
        max_age = None
        for directive in (resp.getheader("Cache-Control") or "").split(","):
            name, _, value = directive.strip().partition("=")
            if name.lower() == "max-age" and value.isdigit():
                max_age = int(value)
        return json.loads(body), max_age
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise JwksUnavailable(f"JWKS fetch failed: {exc}") from exc
    finally:
        conn.close()


class JwksCache:
    """The gateway's public keys, fetched lazily and refreshed with a floor between fetches.

    - An unknown kid triggers a refetch (the gateway publishes a new key before it signs with
      it, so after a rotation the new kid is one fetch away), but at most one fetch per
      `min_refetch` seconds: a flood of tokens with made-up kids costs the gateway at most one
      request per interval, never one per forged token.
    - Known keys are refreshed once the document is older than its `max-age`, so a key the
      gateway retired stops being accepted.
    - If a refresh fails, the keys already held are kept (the gateway may be restarting).
    """

    def __init__(
        self,
        url: str,
        *,
        min_refetch: float = 30.0,
        default_max_age: float = 60.0,
        fetch: Callable[[str], tuple[dict[str, Any], int | None]] = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.min_refetch = min_refetch
        self.default_max_age = default_max_age
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._max_age = default_max_age
        self.fetches = 0

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self.min_refetch

    def _refresh(self, now: float) -> None:
        self._attempted_at = now
        self.fetches += 1
        try:
            document, max_age = self._fetch(self.url)
        except JwksUnavailable:
            if self._fetched_at is None:
                raise
            return
        self._keys = keys_from_jwks(document)
        self._fetched_at = now
        self._max_age = float(max_age) if max_age is not None else self.default_max_age

    def key_for(self, kid: str) -> Any:
        """The key for `kid`, refreshing the set when allowed; None when it is not published."""
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at >= self._max_age
            if (stale or kid not in self._keys) and self._may_fetch(now):
                self._refresh(now)
            return self._keys.get(kid)


# ---------------------------------------------------------------------------------------------
# The HTTP app


def render_page(claims: Mapping[str, Any]) -> str:
    esc = html.escape
    tenant = claims["tenant"]
    rows = [
        ("user (sub)", claims["sub"]),
        ("email", claims.get("email") or "-"),
        ("tenant", f"{tenant['slug']} ({tenant['id']})"),
        ("roles", ", ".join(claims["roles"]) or "-"),
        ("auth method", claims.get("auth_method", "-")),
        ("session (sid)", claims.get("sid") or "-"),
    ]
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in rows)
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>verified by the gateway</title>'
        "</head><body><h1>Hello from the Python example</h1>"
        "<p>Everything below comes from the gateway's signed assertion, verified on this "
        f"request.</p><table>{table}</table></body></html>"
    )


def make_handler(key_for: KeyLookup, audience: str, issuer: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "gateway-example-python"

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, payload: Any) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json")

        def _handle(self) -> None:
            # A request body is never read here; drop the connection after answering.
            self.close_connection = True
            try:
                claims = verify_assertion(
                    self.headers.get(ASSERTION_HEADER),
                    key_for,
                    audience=audience,
                    issuer=issuer,
                )
            except InvalidAssertion as exc:
                error = {"error": {"code": exc.code, "message": exc.message}}
                return self._json(401, error)
            except JwksUnavailable:
                error = {"error": {"code": "jwks-unavailable", "message": "cannot verify"}}
                return self._json(503, error)
            if "text/html" in self.headers.get("Accept", ""):
                return self._send(200, render_page(claims).encode(), "text/html; charset=utf-8")
            return self._json(
                200,
                {
                    "verified": True,
                    "sub": claims["sub"],
                    "email": claims.get("email"),
                    "tenant": claims["tenant"],
                    "roles": claims["roles"],
                    "auth_method": claims.get("auth_method"),
                    "sid": claims.get("sid"),
                    # the key that signed it (changes after `gateway keys rotate`)
                    "kid": jwt.get_unverified_header(self.headers[ASSERTION_HEADER])["kid"],
                    "path": self.path,
                    "method": self.command,
                },
            )

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

        def log_message(self, fmt: str, *args: Any) -> None:
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

    return Handler


def main() -> None:
    jwks_url = os.environ.get("GATEWAY_JWKS_URL")
    audience = os.environ.get("GATEWAY_AUDIENCE")
    if not jwks_url or not audience:
        sys.exit("set GATEWAY_JWKS_URL and GATEWAY_AUDIENCE")
    issuer = os.environ.get("GATEWAY_ISSUER", "gateway")
    cache = JwksCache(
        jwks_url, min_refetch=float(os.environ.get("GATEWAY_JWKS_MIN_REFETCH_SECONDS", "30"))
    )
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    server = ThreadingHTTPServer((host, port), make_handler(cache.key_for, audience, issuer))
    # SIGTERM (docker stop, systemd) ends the server like Ctrl+C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"example app on http://{host}:{port} (aud={audience}, iss={issuer})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
