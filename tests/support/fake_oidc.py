"""A small loopback OpenID Connect provider (and JWT issuer) for tests.

`async with run_fake_oidc() as idp:` serves, on 127.0.0.1:
- `GET /.well-known/openid-configuration`: discovery (issuer `idp.issuer`, no trailing slash);
- `GET /jwks`: the public keys (RSA `rsa-1` and EC P-256 `ec-1`, plus any rotated in);
- `GET /authorize`: auto-consent: checks client and PKCE parameters, then 302 to
  `redirect_uri?code=...&state=...` (the code is bound to the S256 challenge and the nonce);
- `POST /token`: checks the client (basic auth), the code (single use), the redirect URI and
  the PKCE verifier, then returns an ID token signed RS256 (or `idp.alg`).

Knobs for tampering tests: `idp.user` (the claims about the signed-in person),
`idp.id_token_overrides` (claims replaced in the next ID tokens), `idp.alg`, `idp.sign_with`
(a private key not in the JWKS), `idp.discovery_issuer`. `idp.mint(claims, ...)` signs any
token with the provider's keys, for external-JWT tests.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

CLIENT_ID = "gateway-test-client"
CLIENT_SECRET = "fake-oidc-client-secret"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def new_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: PrivateKey, kid: str) -> dict[str, Any]:
    """The public JWK of a private key, with `kid` and `use: sig`."""
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class Grant:
    """What an authorization code was issued for."""

    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None


@dataclass
class FakeOidc:
    """The provider's state; the attributes are the tests' knobs."""

    port: int = 0
    keys: dict[str, PrivateKey] = field(default_factory=dict)
    user: dict[str, Any] = field(default_factory=dict)
    id_token_overrides: dict[str, Any] = field(default_factory=dict)
    alg: str = "RS256"
    sign_with: PrivateKey | None = None
    discovery_issuer: str | None = None
    grants: dict[str, Grant] = field(default_factory=dict)
    token_requests: int = 0
    jwks_requests: int = 0

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    def kid_for(self, alg: str) -> str:
        return "ec-1" if alg.startswith("ES") else "rsa-1"

    def rotate(self, kid: str, key: PrivateKey | None = None) -> PrivateKey:
        """Publishes a new key under `kid` (an RSA key unless given)."""
        self.keys[kid] = key or new_rsa_key()
        return self.keys[kid]

    def mint(
        self,
        claims: dict[str, Any],
        *,
        alg: str | None = None,
        kid: str | None = None,
        key: Any = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """A JWT over `claims`, signed with the provider key for `alg` (or `key`)."""
        alg = alg or self.alg
        kid = kid or self.kid_for(alg)
        signing_key = key if key is not None else (self.sign_with or self.keys[kid])
        return jwt.encode(
            claims, signing_key, algorithm=alg, headers={"kid": kid, **(headers or {})}
        )

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": grant.client_id,
            "sub": f"sub-{self.user.get('email', 'nobody')}",
            "iat": now,
            "exp": now + 300,
            **self.user,
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        claims.update(self.id_token_overrides)
        return self.mint({k: v for k, v in claims.items() if v is not None})


def _discovery(idp: FakeOidc) -> dict[str, Any]:
    return {
        "issuer": idp.discovery_issuer or idp.issuer,
        "authorization_endpoint": f"{idp.issuer}/authorize",
        "token_endpoint": f"{idp.issuer}/token",
        "jwks_uri": idp.jwks_url,
        "response_types_supported": ["code"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "code_challenge_methods_supported": ["S256"],
    }


def build_app(idp: FakeOidc) -> web.Application:
    async def discovery(_: web.Request) -> web.Response:
        return web.json_response(_discovery(idp))

    async def jwks(_: web.Request) -> web.Response:
        idp.jwks_requests += 1
        return web.json_response({"keys": [public_jwk(k, kid) for kid, k in idp.keys.items()]})

    async def authorize(request: web.Request) -> web.Response:
        return await _authorize(idp, request)

    async def token(request: web.Request) -> web.Response:
        return await _token(idp, request)

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks", jwks)
    app.router.add_get("/authorize", authorize)
    app.router.add_post("/token", token)
    return app


async def _authorize(idp: FakeOidc, request: web.Request) -> web.Response:
    q = request.query
    if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
        return web.json_response({"error": "unauthorized_client"}, status=400)
    if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
        return web.json_response({"error": "invalid_request"}, status=400)
    if "openid" not in q.get("scope", "").split():
        return web.json_response({"error": "invalid_scope"}, status=400)
    code = secrets.token_urlsafe(24)
    idp.grants[code] = Grant(CLIENT_ID, q["redirect_uri"], q["code_challenge"], q.get("nonce"))
    location = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q.get("state", "")})
    return web.Response(status=302, headers={"Location": location})


async def _token(idp: FakeOidc, request: web.Request) -> web.Response:
    idp.token_requests += 1
    form = await request.post()
    expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    if request.headers.get("Authorization") != expected:
        return web.json_response({"error": "invalid_client"}, status=401)
    grant = idp.grants.pop(str(form.get("code", "")), None)  # single use
    if grant is None or form.get("grant_type") != "authorization_code":
        return web.json_response({"error": "invalid_grant"}, status=400)
    if form.get("redirect_uri") != grant.redirect_uri:
        return web.json_response({"error": "invalid_grant"}, status=400)
    if s256(str(form.get("code_verifier", ""))) != grant.challenge:
        return web.json_response(
            {"error": "invalid_grant", "error_description": "pkce"}, status=400
        )
    body = {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 300}
    return web.json_response({**body, "id_token": idp.id_token(grant)})


@contextlib.asynccontextmanager
async def run_fake_oidc() -> AsyncIterator[FakeOidc]:
    """A running provider on a free loopback port, with one RSA and one EC key."""
    idp = FakeOidc(keys={"rsa-1": new_rsa_key(), "ec-1": new_ec_key()})
    runner = web.AppRunner(build_app(idp), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        idp.port = int(runner.addresses[0][1])
        yield idp
    finally:
        await runner.cleanup()


def provider_config(idp: FakeOidc, tenant: str = "acme", **extra: Any) -> dict[str, Any]:
    """An `oidc.providers[]` entry for this provider."""
    return {
        "tenant": tenant,
        "issuer": idp.issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        **extra,
    }


def issuer_config(idp: FakeOidc, **extra: Any) -> dict[str, Any]:
    """A `jwt_issuers[]` entry trusting this provider's keys (audience `gateway`)."""
    return {
        "issuer": idp.issuer,
        "jwks_url": idp.jwks_url,
        "audiences": ["gateway"],
        "tenant_claim": "tenant",
        **extra,
    }


def forged_token(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None) -> str:
    """A token built by hand: `alg: none` (no key) or HMAC over any bytes (a public key)."""

    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    signing_input = f"{part(header)}.{part(claims)}"
    if hmac_key is None:
        return signing_input + "."
    mac = hmac.new(hmac_key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def minimal_settings(tmp_path: Path, **config: Any) -> dict[str, Any]:
    """Plain-HTTP cookies, no built-in rate limits, no metrics listener; `config` on top."""
    return {
        "state_dir": str(tmp_path / "state"),
        "cookie": {"secure": False},
        "rate_limits": {"defaults": False},
        "metrics": {"listen": None},
        "upstreams": [{"name": "app", "url": "http://127.0.0.1:9"}],
        **config,
    }


@contextlib.asynccontextmanager
async def in_process_gateway(
    tmp_path: Path, **config: Any
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The gateway's app in this process, with the OIDC routes, as `build_app` composes it.

    `config` replaces top-level keys of `minimal_settings`. The client never stores cookies
    by itself.
    """
    from unittest import mock

    from gateway import app as composition
    from gateway.config import GatewayConfig
    from gateway.web.oidc import setup_oidc

    gateway_config = GatewayConfig.model_validate(minimal_settings(tmp_path, **config))
    if hasattr(composition, "setup_oidc"):  # the composition root registers it
        app = composition.build_app(gateway_config)
    else:  # register the OIDC routes just before the catch-all proxy route
        proxy_route = composition.setup_proxy_route

        def with_oidc(app: web.Application) -> None:
            setup_oidc(app)
            proxy_route(app)

        with mock.patch.object(composition, "setup_proxy_route", with_oidc):
            app = composition.build_app(gateway_config)
    client = TestClient(TestServer(app), cookie_jar=aiohttp.DummyCookieJar())
    async with client:
        yield client
