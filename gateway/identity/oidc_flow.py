"""The browser side of an OIDC login, and the account it signs in to.

`FlowSealer` keeps a login's secrets (state, nonce, PKCE verifier, redirect URI, `rd`) in a
short-lived cookie, encrypted and authenticated with AES-256-GCM under a key derived from the
gateway's master key, so the callback can check them without server-side state and the
browser can neither read nor change them. `OidcAccounts` maps a verified ID token to a user
and a membership of the provider's tenant: by verified email, or created just in time.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.audit.events import Actor, ClockedEvents, RequestContext
from gateway.config.sections import OidcProviderConfig
from gateway.identity.errors import Conflict, InvalidInput
from gateway.identity.models import AuthResult, Membership, User, new_id
from gateway.identity.passwords import PasswordHasher
from gateway.identity.validation import normalize_email
from gateway.storage.ports import IdentityStore

log = logging.getLogger(__name__)

_AAD = b"gateway/oidc-flow/v1"
MAX_COOKIE_CHARS = 3000
OIDC_ACTOR = Actor("system", "oidc")


@dataclasses.dataclass(frozen=True, slots=True)
class FlowState:
    """One login in progress, as sealed into the browser's flow cookie."""

    tenant: str
    state: str
    nonce: str
    verifier: str
    redirect_uri: str
    rd: str
    expires_at: float

    @staticmethod
    def new(tenant: str, verifier: str, redirect_uri: str, rd: str, ttl: float) -> FlowState:
        token = secrets.token_urlsafe
        return FlowState(
            tenant, token(32), token(32), verifier, redirect_uri, rd, time.time() + ttl
        )


class FlowSealer:
    """Seals and opens `FlowState`s; a forged, altered or expired cookie opens to None."""

    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        self._aead = AESGCM(key)
        self._clock = clock

    def seal(self, flow: FlowState) -> str:
        nonce = os.urandom(12)
        plain = json.dumps(dataclasses.asdict(flow), separators=(",", ":")).encode()
        sealed = nonce + self._aead.encrypt(nonce, plain, _AAD)
        return base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")

    def open(self, text: str | None) -> FlowState | None:
        if not text or len(text) > MAX_COOKIE_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            plain = self._aead.decrypt(raw[:12], raw[12:], _AAD)
            flow = FlowState(**json.loads(plain))
        except (InvalidTag, ValueError, TypeError, binascii.Error):
            return None
        # SECURITY: a login must finish within the flow timeout; old cookies are worthless.
        return flow if flow.expires_at > self._clock() else None


class LoginRefused(Exception):
    """The verified identity may not sign in to this tenant (reason for logs and audit)."""


def verified_email(claims: Mapping[str, Any], config: OidcProviderConfig) -> str:
    """The token's email if the provider vouches for it and may speak for its domain."""
    # SECURITY: an unverified email would let anyone claim an existing account.
    if claims.get("email_verified") is not True or not isinstance(claims.get("email"), str):
        raise LoginRefused("email-not-verified")
    try:
        email = normalize_email(claims["email"])
    except InvalidInput:
        raise LoginRefused("email-invalid") from None
    # SECURITY: a tenant's IdP may only vouch for the email domains it is configured for;
    # otherwise it could sign in as any account that also belongs to other tenants.
    domain = email.rpartition("@")[2]
    if config.email_domains and domain not in config.email_domains:
        raise LoginRefused("email-domain-not-allowed")
    return email


class OidcAccounts(ClockedEvents):
    """Finds or (just in time) creates the account and membership an ID token signs in to."""

    def __init__(
        self, store: IdentityStore, hasher: PasswordHasher, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock

    async def sign_in(
        self, config: OidcProviderConfig, claims: Mapping[str, Any], ctx: RequestContext
    ) -> AuthResult:
        """The user, tenant and roles; `LoginRefused` (audited) when sign-in is not allowed."""
        try:
            email = verified_email(claims, config)
            result = await self._member(config, email, ctx)
        except LoginRefused as exc:
            details = {"reason": str(exc), "method": "oidc", "issuer": config.issuer}
            # Failures go to the platform chain, like password sign-in failures.
            event = self._event("auth.signin", Actor("anonymous"), ctx, None, None, details)
            await self._store.append_audit(dataclasses.replace(event, outcome="failure"))
            raise
        details = {"method": "oidc", "issuer": config.issuer}
        actor = Actor("user", result.user.id)
        event = self._event("auth.signin", actor, ctx, result.tenant.id, result.user.id, details)
        await self._store.append_audit(event)
        return result

    async def _member(
        self, config: OidcProviderConfig, email: str, ctx: RequestContext
    ) -> AuthResult:
        tenant = await self._store.get_tenant_by_slug(config.tenant)
        if tenant is None:
            raise LoginRefused("tenant-unknown")
        existing = await self._store.get_user_by_email(email)
        if existing is None:
            if not config.jit.enabled:
                raise LoginRefused("no-account")
            user = await self._create_user(email, tenant.id, config, ctx)
            return AuthResult(user, tenant, (config.jit.role,))
        user = existing.user
        membership = await self._store.get_membership(tenant.id, user.id)
        if membership is not None and membership.roles:
            return AuthResult(user, tenant, membership.roles)
        if not config.jit.enabled:
            raise LoginRefused("not-a-member")
        joined = Membership(tenant.id, user.id, (config.jit.role,), self._clock())
        details = {"roles": list(joined.roles), "jit": True}
        event = self._event("member.add", OIDC_ACTOR, ctx, tenant.id, user.id, details)
        await self._store.add_membership(joined, event)
        return AuthResult(user, tenant, joined.roles)

    async def _create_user(
        self, email: str, tenant_id: str, config: OidcProviderConfig, ctx: RequestContext
    ) -> User:
        now = self._clock()
        user = User(new_id("u"), email, now, email_verified=True)
        membership = Membership(tenant_id, user.id, (config.jit.role,), now)
        # SECURITY: the account has no usable password: the hash of a random secret nobody
        # knows, so password sign-in fails after the same Argon2 work as for anyone else.
        unusable = await self._hasher.hash(secrets.token_urlsafe(32))
        details = {"roles": list(membership.roles), "jit": True, "issuer": config.issuer}
        event = self._event("user.create", OIDC_ACTOR, ctx, tenant_id, user.id, details)
        try:
            await self._store.create_user(user, unusable, membership, event)
        except Conflict:
            raise LoginRefused("concurrent-creation") from None
        return user
