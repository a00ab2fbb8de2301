"""An OpenID Connect relying party for one tenant's provider (authorization code + PKCE).

Guarantees: the discovery document must name exactly the configured issuer and trusted
(https, or loopback http) endpoints; an ID token is accepted only when signed with an
allow-listed asymmetric algorithm by a key of the provider's JWKS that fits that algorithm,
issued by the configured issuer for our client id (and, with several audiences, authorized
for us through `azp`), unexpired, and carrying the nonce of this login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import jwt

from gateway.config.sections import OidcProviderConfig, check_trusted_url
from gateway.identity.jwks_cache import FetchError, JwksCache, OutboundHttp

DISCOVERY_PATH = "/.well-known/openid-configuration"
METADATA_TTL = 3600.0
_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")


class OidcError(Exception):
    """The login cannot complete; the message is for logs, never for the browser."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_pkce() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) per RFC 7636."""
    verifier = b64url(secrets.token_bytes(48))
    return verifier, b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def basic_auth(client_id: str, secret: str) -> str:
    """client_secret_basic: both halves form-encoded before base64 (RFC 6749 §2.3.1)."""
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The endpoints a discovery document names."""

    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


def parse_metadata(document: Mapping[str, Any], issuer: str) -> ProviderMetadata:
    """The endpoints of a discovery document that belongs to `issuer`."""
    # SECURITY: a document naming another issuer is a mix-up attack (OIDC Discovery §4.3).
    if document.get("issuer") != issuer:
        raise OidcError("discovery document names another issuer")
    urls = [document.get(name) for name in _ENDPOINTS]
    for url in urls:
        try:
            check_trusted_url(url if isinstance(url, str) else "")
        except ValueError:
            raise OidcError("discovery document has an untrusted endpoint") from None
    return ProviderMetadata(*(str(url) for url in urls))


class OidcProvider:
    """One configured provider: discovery (cached), authorization URL, code exchange and
    ID-token validation."""

    def __init__(
        self,
        config: OidcProviderConfig,
        http: OutboundHttp,
        *,
        clock_skew: int = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._http = http
        self._skew = clock_skew
        self._clock = clock
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._keys: JwksCache | None = None

    async def metadata(self) -> ProviderMetadata:
        """The provider's endpoints, rediscovered every hour."""
        now = self._clock()
        if self._metadata is not None and now - self._metadata[0] < METADATA_TTL:
            return self._metadata[1]
        url = self.config.issuer.rstrip("/") + DISCOVERY_PATH
        try:
            found = parse_metadata(await self._http.get_json(url), self.config.issuer)
        except FetchError as exc:
            raise OidcError(f"discovery failed: {exc}") from None
        self._metadata = (now, found)
        return found

    async def _jwks(self) -> JwksCache:
        found = await self.metadata()
        if self._keys is None or self._keys.url != found.jwks_uri:
            self._keys = JwksCache(found.jwks_uri, self._http)
        return self._keys

    async def authorization_url(
        self, redirect_uri: str, state: str, nonce: str, challenge: str
    ) -> str:
        """Where to send the browser to sign in."""
        endpoint = (await self.metadata()).authorization_endpoint
        query = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return f"{endpoint}?{urlencode(query)}"

    async def exchange(self, code: str, redirect_uri: str, verifier: str) -> str:
        """The ID token the token endpoint returns for `code` and the PKCE verifier."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        headers = {"Accept": "application/json"}
        secret = self.config.client_secret
        if secret is None:
            form["client_id"] = self.config.client_id
        else:
            headers["Authorization"] = basic_auth(self.config.client_id, secret.get_secret_value())
        endpoint = (await self.metadata()).token_endpoint
        try:
            answer = await self._http.request_json("POST", endpoint, data=form, headers=headers)
        except FetchError as exc:
            raise OidcError(f"code exchange failed: {exc}") from None
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("token response without id_token")
        return id_token

    async def validate_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The claims of a valid ID token for this login; OidcError otherwise."""
        keys = await self._jwks()
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise OidcError("malformed id_token") from None
        alg, kid = header.get("alg"), header.get("kid")
        # SECURITY: the allow-list is ours, never the token's; `none`/HS* are never in it.
        if not isinstance(alg, str) or alg not in self.config.algorithms:
            raise OidcError("id_token algorithm not allowed")
        key = await keys.key(kid if isinstance(kid, str) else None, alg)
        if key is None:
            raise OidcError("no provider key for the id_token")
        claims = self._decode(id_token, key, alg)
        self._check_binding(claims, nonce)
        return claims

    def _decode(self, id_token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                id_token,
                key,
                algorithms=[alg],
                audience=self.config.client_id,
                issuer=self.config.issuer,
                leeway=self._skew,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise OidcError(f"invalid id_token: {type(exc).__name__}") from None

    def _check_binding(self, claims: Mapping[str, Any], nonce: str) -> None:
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        # SECURITY: a token minted for another client that merely lists us is not ours.
        if (len(audiences) > 1 or azp is not None) and azp != self.config.client_id:
            raise OidcError("id_token authorized for another party")
        presented = claims.get("nonce")
        # SECURITY: the nonce ties the token to this browser's login (replay, injection).
        if not isinstance(presented, str) or not hmac.compare_digest(
            presented.encode(), nonce.encode()
        ):
            raise OidcError("id_token nonce mismatch")
