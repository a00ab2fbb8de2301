"""The signed identity assertion (`X-Gateway-Assertion`) the upstream can verify.

An EdDSA (Ed25519) JWT with header `kid` and `typ: JWT`, signed by the ring's current key,
verifiable against `/.gateway/jwks.json`. Claims: `iss`, `aud` (the route's upstream name),
`sub`, `tenant` ({id, slug}), `roles` (sorted), `email` (null for service accounts), `sid`
(session public id, or API key id), `auth_method`, `iat`, `nbf`, `exp` (iat + 60), `jti`.

Assertions are cached briefly per identity, audience and signing key, so a busy session
does not sign on every request: `jti` identifies an assertion, not a request, and the same
assertion may reach the upstream several times within its short life.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jwt

from gateway.identity.principal import Principal
from gateway.identity.signing_keys import ASSERTION_LIFETIME, KeyRing

CACHE_TTL = 5.0
"""At most this many seconds an assertion is reused after it was signed."""
MIN_REMAINING = 30.0
"""A cached assertion is only reused while at least this many seconds of validity remain."""
MAX_CACHE_ENTRIES = 10_000

CacheKey = tuple[str, str, str | None, str, str, tuple[str, ...], str | None, str, str]


def session_id(principal: Principal) -> str | None:
    """The assertion's `sid`: the public session id, or the API key id for key callers."""
    if principal.session is not None:
        return principal.session.id
    return principal.key_id


class AssertionSigner:
    """Signs assertions for principals with the ring's current key, caching each briefly.

    A cached assertion is returned only while it is younger than `cache_ttl`, has more than
    MIN_REMAINING seconds left, and the identity, audience and signing key are all unchanged
    (they are the cache key), so a role change or a key activation is never masked.
    """

    def __init__(
        self,
        ring: KeyRing,
        issuer: str,
        clock: Callable[[], float] = time.time,
        *,
        cache_ttl: float = CACHE_TTL,
        max_entries: int = MAX_CACHE_ENTRIES,
    ) -> None:
        self.ring = ring
        self.issuer = issuer
        self.clock = clock
        self.cache_ttl = cache_ttl
        self.max_entries = max_entries
        self._cache: OrderedDict[CacheKey, tuple[str, float, float]] = OrderedDict()

    def assertion_for(self, principal: Principal, audience: str) -> str:
        """A currently valid assertion for `principal` addressed to `audience`."""
        signing = self.ring.signer()
        now = self.clock()
        key = cache_key(principal, audience, signing.kid)
        cached = self._cache.get(key)
        if cached is not None:
            token, signed_at, exp = cached
            if 0 <= now - signed_at < self.cache_ttl and exp - now > MIN_REMAINING:
                self._cache.move_to_end(key)
                return token
        claims = self.claims(principal, audience, int(now))
        token = jwt.encode(
            claims, signing.private, algorithm="EdDSA", headers={"kid": signing.kid, "typ": "JWT"}
        )
        self._cache[key] = (token, now, float(claims["exp"]))
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return token

    def claims(self, principal: Principal, audience: str, iat: int) -> dict[str, Any]:
        """The claim set, exactly (see the module docstring)."""
        tenant = principal.tenant
        return {
            "iss": self.issuer,
            "aud": audience,
            "sub": principal.id,
            "tenant": {"id": tenant.id, "slug": tenant.slug},
            "roles": sorted(principal.roles),
            "email": principal.email,
            "sid": session_id(principal),
            "auth_method": principal.auth_method,
            "iat": iat,
            "nbf": iat,
            "exp": iat + ASSERTION_LIFETIME,
            "jti": secrets.token_urlsafe(16),
        }


def cache_key(principal: Principal, audience: str, kid: str) -> CacheKey:
    """Everything a claim depends on besides time: equal keys give interchangeable claims."""
    tenant = principal.tenant
    return (
        kid,
        audience,
        session_id(principal),
        principal.id,
        tenant.id,
        tuple(sorted(principal.roles)),
        principal.email,
        tenant.slug,
        principal.auth_method,
    )


def issuer_for(public_url: str | None) -> str:
    """The `iss` claim: the configured `public_url`, else `gateway`."""
    return public_url if public_url is not None else "gateway"
