"""Establishing the principal of a request from its credentials.

Shared by the proxy's `LoadPrincipal` stage and the gateway's own API handlers, so both apply
exactly the same rules: an API key binds the request to the key's tenant; a session cookie to
the tenant the request names (or the session's default), and only if the user is a member.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from aiohttp import web

from gateway.audit.events import Actor, RequestContext
from gateway.config import CookieConfig
from gateway.identity.directory import Directory, NoMembership
from gateway.identity.jwt_issuers import JwtIssuers, bearer_token, principal_from_jwt
from gateway.identity.principal import Principal, PrincipalMemo
from gateway.identity.service import IdentityService
from gateway.pipeline.reasons import Deny, Reason
from gateway.sessions.cookies import read_session_token, set_session_cookie
from gateway.sessions.models import SessionRecord
from gateway.sessions.service import SessionService

API_KEY_PREFIX = "gw_"


def bearer_api_key(request: web.BaseRequest) -> str | None:
    """The `gw_…` API key of an `Authorization: Bearer` header, if that is what it holds."""
    values = request.headers.getall("Authorization", [])
    if len(values) != 1:
        return None
    scheme, _, credential = values[0].strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential.startswith(API_KEY_PREFIX):
        return None
    return credential


@dataclass(frozen=True, slots=True)
class Authenticator:
    """Turns a request's credentials into a `Principal`, a `Deny`, or None (anonymous)."""

    identity: IdentityService
    directory: Directory
    sessions: SessionService
    cookie: CookieConfig
    jwt_issuers: JwtIssuers | None = None
    """External JWT issuers; None (or none configured): a non-`gw_` bearer is not read."""
    _principals: PrincipalMemo = field(
        default_factory=PrincipalMemo, init=False, repr=False, compare=False
    )

    async def authenticate(
        self, request: web.BaseRequest, tenant_slug: str | None
    ) -> Principal | Deny | None:
        """The caller as a principal acting in the named tenant (None: the default one).

        Store failures propagate (`StoreUnavailable` and kin): the caller answers 503.
        """
        if len(request.headers.getall("Authorization", [])) > 1:
            # SECURITY: two credentials could be read differently by different layers.
            return Deny(Reason.BAD_REQUEST, "more than one Authorization header")
        api_key = bearer_api_key(request)
        if api_key is not None:
            return await self._from_api_key(api_key, tenant_slug)
        # SECURITY: with issuers configured, any other bearer is a JWT to verify or refuse.
        if self.jwt_issuers and (bearer := bearer_token(request)) is not None:
            return await principal_from_jwt(self.jwt_issuers, self.directory, bearer, tenant_slug)
        token = read_session_token(request, self.cookie)
        if token is None:
            return None
        record = await self.sessions.authenticate(token)
        # SECURITY: a half-session (password done, MFA pending) reaches nothing but the MFA step.
        if record is None or record.mfa_pending:
            return None
        new_token = None
        if record.rotate_pending:
            rotated = await self._rotate(request, record)
            if rotated is not None:
                new_token, record = rotated
        principal = await self.from_session(record, tenant_slug)
        if new_token is not None and isinstance(principal, Principal):
            return dataclasses.replace(principal, new_token=new_token)
        return principal

    async def _rotate(
        self, request: web.BaseRequest, record: SessionRecord
    ) -> tuple[str, SessionRecord] | None:
        """Rotates a session flagged after a privilege change (None: a racing request won)."""
        ctx = RequestContext(
            ip=request.remote, user_agent=request.headers.get("User-Agent", "")[:256] or None
        )
        # SECURITY: a token seen before a privilege change must not carry the new privileges.
        return await self.sessions.rotate(
            record, Actor("system", "gateway"), ctx, reason="privilege-change"
        )

    async def _from_api_key(self, token: str, tenant_slug: str | None) -> Principal | Deny:
        found = await self.directory.api_key(token)
        if found is None:
            # SECURITY: a presented but invalid key is refused, never treated as anonymous.
            return Deny(Reason.UNAUTHENTICATED, "invalid API key")
        # SECURITY: a key is bound to its tenant; naming another tenant is tenant confusion.
        if tenant_slug is not None and tenant_slug != found.tenant.slug:
            return Deny(Reason.NOT_A_MEMBER)
        memo_key = ("key", found.key_id)
        principal = self._principals.get(memo_key, found, None)
        if principal is None:
            principal = Principal(
                kind="service_account",
                id=found.service_account.id,
                email=None,
                tenant=found.tenant,
                roles=found.roles,
                auth_method="api_key",
                key_id=found.key_id,
            )
            self._principals.put(memo_key, found, None, principal)
        return principal

    async def from_session(
        self, record: SessionRecord, tenant_slug: str | None
    ) -> Principal | Deny:
        """The principal of a valid session, acting in the named or the default tenant."""
        found = await self.directory.membership(tenant_slug, record.tenant_id, record.user_id)
        if found is NoMembership.TENANT_UNKNOWN:
            return Deny(Reason.TENANT_UNKNOWN)
        # SECURITY: membership of the resolved tenant is required; anything else is 403.
        if isinstance(found, NoMembership):
            return Deny(Reason.NOT_A_MEMBER)
        memo_key = ("session", record.id, found.tenant.id)
        principal = self._principals.get(memo_key, record, found)
        if principal is None:
            principal = Principal(
                kind="user",
                id=found.user.id,
                email=found.user.email,
                tenant=found.tenant,
                roles=found.roles,
                auth_method="session",
                session=record,
                is_operator=found.is_operator,
            )
            self._principals.put(memo_key, record, found, principal)
        return principal


def session_cookie_header(token: str, config: CookieConfig) -> str:
    """The `Set-Cookie` value that installs `token` as the session cookie."""
    carrier = web.Response()
    set_session_cookie(carrier, token, config)
    morsel = next(iter(carrier.cookies.values()))
    return morsel.OutputString()
