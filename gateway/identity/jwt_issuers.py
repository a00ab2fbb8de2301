"""External JWT issuers: machine clients calling with `Authorization: Bearer <JWT>`.

Guarantees: a token is accepted only when its `iss` is a configured issuer (exact match), its
header `alg` is in that issuer's allow-list (never `none`, never HMAC), its signature verifies
under a key of the issuer's JWKS whose type fits `alg`, its `aud` names one of the configured
audiences, it has `exp` (checked, with the configured skew) and `sub`, its tenant exists, and
every role it claims is a gateway role. The principal is a machine principal with the id
`{subject_prefix}{sub}` (default prefix `jwt:{issuer host}:`) and `auth_method="jwt"`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from aiohttp import web

from gateway.config.sections import JwtIssuerConfig
from gateway.identity.directory import Directory
from gateway.identity.jwks_cache import JwksCache, OutboundHttp
from gateway.identity.models import ROLES
from gateway.identity.principal import Principal
from gateway.pipeline.reasons import Deny, Reason

log = logging.getLogger(__name__)

_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_SUBJECT = re.compile(r"^[\x21-\x7e]{1,256}$")
MAX_TOKEN_LENGTH = 16 * 1024


class JwtRefused(Exception):
    """The token is not acceptable; the message is for logs, never for the client."""


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    """What a verified external token says: who, in which tenant, with which roles."""

    principal_id: str
    tenant_slug: str
    roles: tuple[str, ...]
    issuer: str


def bearer_token(request: web.BaseRequest) -> str | None:
    """The credential of a single `Authorization: Bearer` header, if there is one."""
    values = request.headers.getall("Authorization", [])
    if len(values) != 1:
        return None
    scheme, _, credential = values[0].strip().partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None


def claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by exact name (URL-like names included), else by a dotted path."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def claimed_roles(value: Any) -> tuple[str, ...]:
    """Roles from a list of strings or a space-separated string; every one must be valid."""
    roles = value.split() if isinstance(value, str) else value
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        raise JwtRefused("no roles claimed")
    # SECURITY: an issuer cannot grant a role the gateway does not know (e.g. "operator").
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise JwtRefused(f"unknown roles claimed: {unknown[:5]}")
    return tuple(sorted(set(roles)))


class JwtIssuers:
    """The configured issuers, each with its own JWKS cache."""

    def __init__(self, configs: Iterable[JwtIssuerConfig], http: OutboundHttp) -> None:
        self.http = http
        self._issuers = {config.issuer: config for config in configs}
        self._keys = {
            config.issuer: JwksCache(config.jwks_url, http) for config in self._issuers.values()
        }

    def __len__(self) -> int:
        return len(self._issuers)

    def cache(self, issuer: str) -> JwksCache:
        """The key cache of a configured issuer."""
        return self._keys[issuer]

    async def verify(self, token: str) -> ExternalIdentity:
        """The identity a valid token asserts; `JwtRefused` for every kind of failure."""
        if len(token) > MAX_TOKEN_LENGTH or not _JWT_SHAPE.match(token):
            raise JwtRefused("not a JWT")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise JwtRefused(f"malformed: {type(exc).__name__}") from None
        config = self._issuers.get(str(unverified.get("iss")))
        if config is None:
            raise JwtRefused("unknown issuer")
        claims = await self._verified_claims(token, header, config)
        return self._identity(claims, config)

    async def _verified_claims(
        self, token: str, header: Mapping[str, Any], config: JwtIssuerConfig
    ) -> dict[str, Any]:
        alg, kid = header.get("alg"), header.get("kid")
        # SECURITY: the allow-list comes from configuration, never from the token; `none`
        # and HS* can never be in it (the configuration refuses them).
        if not isinstance(alg, str) or alg not in config.algorithms:
            raise JwtRefused(f"algorithm not allowed: {str(alg)[:16]!r}")
        if kid is not None and not isinstance(kid, str):
            raise JwtRefused("malformed kid")
        key = await self._keys[config.issuer].key(kid, alg)
        if key is None:
            raise JwtRefused("no matching signing key")
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=list(config.audiences),
                issuer=config.issuer,
                leeway=config.clock_skew,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise JwtRefused(f"invalid: {type(exc).__name__}") from None

    def _identity(self, claims: Mapping[str, Any], config: JwtIssuerConfig) -> ExternalIdentity:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not _SUBJECT.match(subject):
            raise JwtRefused("malformed sub")
        tenant = config.tenant
        if config.tenant_claim is not None:
            tenant = claim(claims, config.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise JwtRefused("no tenant claimed")
        roles = claimed_roles(claim(claims, config.roles_claim))
        prefix = config.subject_prefix
        if prefix is None:
            prefix = f"jwt:{urlsplit(config.issuer).hostname or config.issuer}:"
        return ExternalIdentity(prefix + subject, tenant.strip().lower(), roles, config.issuer)


async def principal_from_jwt(
    issuers: JwtIssuers, directory: Directory, token: str, tenant_slug: str | None
) -> Principal | Deny:
    """The machine principal of a bearer JWT, bound to the tenant its token names."""
    try:
        found = await issuers.verify(token)
    except JwtRefused as exc:
        log.info("bearer jwt refused: %s", exc)
        # SECURITY: a presented but invalid token is refused, never treated as anonymous.
        return Deny(Reason.UNAUTHENTICATED, "invalid bearer token")
    tenant = await directory.tenant_by_slug(found.tenant_slug)
    if tenant is None:
        log.info("bearer jwt refused: unknown tenant (issuer %s)", found.issuer)
        return Deny(Reason.UNAUTHENTICATED, "invalid bearer token")
    # SECURITY: the token is bound to its tenant; naming another tenant is tenant confusion.
    if tenant_slug is not None and tenant_slug.strip().lower() != tenant.slug:
        return Deny(Reason.NOT_A_MEMBER)
    return Principal(
        kind="service_account",
        id=found.principal_id,
        email=None,
        tenant=tenant,
        roles=found.roles,
        auth_method="jwt",
    )
