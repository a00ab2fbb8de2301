"""The identity service: sign-up, sign-in, invitations, roles, service accounts and API keys.

It is the one place where identity input is validated, passwords are hashed, tokens are made
and hashed, and audit events are built; the `IdentityStore` below it only stores. Every
change is audited in the same transaction as the change itself (the store guarantees that).
Errors are `gateway.identity.errors.IdentityError`s; sign-in and API-key authentication never
raise them and answer `None` for every kind of failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Final

from gateway.audit.events import Actor, AuditEvent, Outcome, RequestContext
from gateway.identity import apikeys
from gateway.identity.errors import (
    Conflict,
    InvalidInput,
    InvitationInvalid,
    NotFound,
    PasswordRejected,
)
from gateway.identity.models import (
    ApiKey,
    ApiKeyPrincipal,
    Invitation,
    Membership,
    ServiceAccount,
    SigninResult,
    SignupResult,
    Tenant,
    User,
    UserCredentials,
    new_id,
)
from gateway.identity.passwords import PasswordHasher, PasswordPolicyError, check_password_policy
from gateway.identity.settings import apply_settings, settings_view
from gateway.identity.validation import (
    is_valid_slug,
    normalize_email,
    normalize_roles,
    normalize_slug,
    validate_name,
    validate_role,
)
from gateway.storage.ports import IdentityStore

__all__ = ["INVITATION_TTL", "IdentityService"]

INVITATION_TTL: Final = 7 * 24 * 3600.0
"""Default lifetime of an invitation, in seconds."""

ANONYMOUS: Final = Actor("anonymous")


class IdentityService:
    """Identity operations over an `IdentityStore` and a `PasswordHasher`.

    `clock` gives the current time in epoch seconds (injectable for tests); every timestamp
    and every expiry decision uses it.
    """

    def __init__(
        self,
        store: IdentityStore,
        hasher: PasswordHasher,
        clock: Callable[[], float] = time.time,
        invitation_ttl: float = INVITATION_TTL,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock
        self._invitation_ttl = invitation_ttl

    async def signup(
        self, email: str, password: str, tenant_slug: str, ctx: RequestContext
    ) -> SignupResult:
        """Creates a tenant and a user who is its `admin`, atomically.

        Raises `InvalidInput`, `PasswordRejected`, `Conflict("tenant")` for a taken slug and
        `Conflict("email")` for an email that already has an account (also when racing).
        """
        email, slug = normalize_email(email), normalize_slug(tenant_slug)
        self._check_password(password, email)
        if await self._store.get_tenant_by_slug(slug) is not None:
            raise Conflict("tenant")
        if await self._store.get_user_by_email(email) is not None:
            raise Conflict("email")
        password_hash = await self._hasher.hash(password)
        now = self._clock()
        tenant = Tenant(new_id("t"), slug, now)
        user = User(new_id("u"), email, now)
        membership = Membership(tenant.id, user.id, ("admin",), now)
        event = self._event("auth.signup", Actor("user", user.id), ctx, tenant.id, user.id)
        await self._store.signup(tenant, user, password_hash, membership, event)
        return SignupResult(user, tenant, membership.roles)

    async def signup_with_invitation(
        self, email: str, password: str, invitation_token: str, ctx: RequestContext
    ) -> SignupResult:
        """Creates a user who joins the invitation's tenant with the invited role.

        The invitation is single use, must be unexpired and addressed to this email
        (case-insensitive); otherwise `InvitationInvalid`. An email that already has an
        account gets `Conflict("email")`: that person should sign in instead (joining a second
        tenant with an existing account needs an authenticated flow, not a sign-up).
        """
        email = normalize_email(email)
        self._check_password(password, email)
        invitation = await self._valid_invitation(invitation_token, email)
        tenant = await self._store.get_tenant(invitation.tenant_id)
        if tenant is None:
            raise InvitationInvalid()
        if await self._store.get_user_by_email(email) is not None:
            raise Conflict("email")
        password_hash = await self._hasher.hash(password)
        now = self._clock()
        user = User(new_id("u"), email, now)
        membership = Membership(tenant.id, user.id, (invitation.role,), now)
        details = {"invitation_id": invitation.id}
        event = self._event("auth.signup", Actor("user", user.id), ctx, tenant.id, user.id, details)
        try:
            await self._store.accept_invitation(
                invitation.id, user, password_hash, membership, event
            )
        except Conflict as exc:
            if exc.field == "invitation":
                raise InvitationInvalid() from None
            raise
        return SignupResult(user, tenant, membership.roles)

    async def signin(
        self, email: str, password: str, tenant_slug: str | None, ctx: RequestContext
    ) -> SigninResult | None:
        """The user, tenant and roles for a correct email and password, else None.

        Every failure (unknown or malformed email, wrong password, not a member of the named
        tenant, no membership at all) is the same None after the same Argon2 work, and is
        audited as `auth.signin` failure with no tenant and, for unknown emails, no user. The
        tenant is the named one, else the user's oldest membership. A hash made with old
        parameters is replaced on success.
        """
        credentials = await self._credentials(email)
        if credentials is None:
            # SECURITY: user enumeration by timing; an unknown email costs one Argon2 verify too.
            await self._hasher.verify_dummy(password)
            await self._signin_failed(ctx, None, "unknown-email")
            return None
        user = credentials.user
        verified = await self._hasher.verify(credentials.password_hash, password)
        if not verified.ok:
            await self._signin_failed(ctx, user.id, "bad-password")
            return None
        # SECURITY: tenant isolation; a valid password alone grants nothing in a foreign tenant.
        chosen = await self._signin_tenant(user.id, tenant_slug)
        if chosen is None:
            await self._signin_failed(ctx, user.id, "not-a-member")
            return None
        tenant, roles = chosen
        event = self._event("auth.signin", Actor("user", user.id), ctx, tenant.id, user.id)
        if verified.needs_rehash:
            new_hash = await self._hasher.hash(password)
            event.details["rehashed"] = True
            await self._store.update_password_hash(user.id, new_hash, event)
        else:
            await self._store.append_audit(event)
        return SigninResult(user, tenant, roles)

    async def tenant_by_slug(self, slug: str) -> Tenant | None:
        """The tenant with this slug (any letter case); None for a malformed slug."""
        normalized = slug.strip().lower() if len(slug) <= 256 else slug
        if not is_valid_slug(normalized):
            return None
        return await self._store.get_tenant_by_slug(normalized)

    async def user_by_email(self, email: str) -> User | None:
        """The account with this email (normalized), if any."""
        credentials = await self._credentials(email)
        return credentials.user if credentials else None

    async def user_by_id(self, user_id: str) -> User | None:
        """The user with this id."""
        return await self._store.get_user(user_id)

    async def tenant_by_id(self, tenant_id: str) -> Tenant | None:
        """The tenant with this id."""
        return await self._store.get_tenant(tenant_id)

    async def membership_roles(self, tenant_id: str, user_id: str) -> tuple[str, ...] | None:
        """The user's roles in this tenant (sorted), or None when not a member."""
        membership = await self._store.get_membership(tenant_id, user_id)
        return membership.roles if membership else None

    async def default_tenant(self, user_id: str) -> Tenant | None:
        """The tenant of the user's oldest membership, or None without any."""
        for membership in await self._store.list_memberships(user_id):
            tenant = await self._store.get_tenant(membership.tenant_id)
            if tenant is not None:
                return tenant
        return None

    async def is_operator(self, user_id: str) -> bool:
        """Whether the user holds the platform role `operator`."""
        return await self._store.is_operator(user_id)

    async def create_invitation(
        self,
        tenant_id: str,
        email: str,
        role: str,
        actor: Actor,
        ctx: RequestContext,
        ttl: float | None = None,
    ) -> tuple[str, Invitation]:
        """A single-use invitation and its token (256 bits, returned once, stored hashed)."""
        email, role = normalize_email(email), validate_role(role)
        await self._require_tenant(tenant_id)
        token = apikeys.new_invitation_token()
        expires_at = self._clock() + (self._invitation_ttl if ttl is None else ttl)
        invitation = Invitation(new_id("inv"), tenant_id, email, role, expires_at)
        details = {"email": email, "role": role, "expires_at": expires_at}
        event = self._event("invitation.create", actor, ctx, tenant_id, invitation.id, details)
        await self._store.create_invitation(invitation, apikeys.hash_secret(token), event)
        return token, invitation

    async def set_roles(
        self,
        tenant_id: str,
        user_id: str,
        roles: Iterable[str],
        actor: Actor,
        ctx: RequestContext,
    ) -> tuple[str, ...]:
        """Replaces a member's roles (validated, sorted); `NotFound("membership")` if the user
        is not a member of this tenant."""
        normalized = normalize_roles(roles)
        details = {"roles": list(normalized)}
        event = self._event("member.roles", actor, ctx, tenant_id, user_id, details)
        await self._store.set_membership_roles(tenant_id, user_id, normalized, event)
        return normalized

    async def create_service_account(
        self, tenant_id: str, name: str, roles: Iterable[str], actor: Actor, ctx: RequestContext
    ) -> ServiceAccount:
        """A new service account of this tenant; `Conflict("service_account")` for a taken name."""
        name, normalized = validate_name(name), normalize_roles(roles)
        await self._require_tenant(tenant_id)
        account = ServiceAccount(new_id("sa"), tenant_id, name, normalized, self._clock())
        details = {"name": name, "roles": list(normalized)}
        event = self._event("service_account.create", actor, ctx, tenant_id, account.id, details)
        await self._store.create_service_account(account, event)
        return account

    async def service_accounts(self, tenant_id: str) -> list[ServiceAccount]:
        """The tenant's service accounts, oldest first."""
        return await self._store.list_service_accounts(tenant_id)

    async def api_keys(self, tenant_id: str, account_id: str) -> list[ApiKey]:
        """The keys (metadata only) of this tenant's service account, oldest first."""
        return await self._store.list_api_keys(tenant_id, account_id)

    async def create_api_key(
        self,
        tenant_id: str,
        account_id: str,
        expires_at: float | None,
        actor: Actor,
        ctx: RequestContext,
    ) -> tuple[str, ApiKey]:
        """A new key of this tenant's service account: `(plaintext, key)`. The plaintext
        `gw_<key id>_<secret>` exists only in this return value; the store keeps SHA-256."""
        if await self._store.get_service_account(tenant_id, account_id) is None:
            raise NotFound("service_account")
        now = self._clock()
        if expires_at is not None and expires_at <= now:
            raise InvalidInput("expires_at", "expiry must be in the future")
        key = ApiKey(new_id("key"), tenant_id, account_id, now, expires_at)
        secret = apikeys.new_api_key_secret()
        details = {"service_account_id": account_id, "expires_at": expires_at}
        event = self._event("apikey.create", actor, ctx, tenant_id, key.id, details)
        await self._store.create_api_key(key, apikeys.hash_secret(secret), event)
        return apikeys.format_api_key(key.id, secret), key

    async def revoke_api_key(
        self, tenant_id: str, key_id: str, actor: Actor, ctx: RequestContext
    ) -> ApiKey:
        """Revokes this tenant's key at once; `NotFound("api_key")` for another tenant's key."""
        event = self._event("apikey.revoke", actor, ctx, tenant_id, key_id)
        return await self._store.revoke_api_key(tenant_id, key_id, self._clock(), event)

    async def authenticate_api_key(self, token: str) -> ApiKeyPrincipal | None:
        """The principal of a valid, unrevoked, unexpired key, else None.

        A malformed token is refused without touching the store; the secret is compared in
        constant time; the principal is bound to the tenant stored with the key.
        """
        parsed = apikeys.parse_api_key(token)
        if parsed is None:
            return None
        record = await self._store.get_api_key(parsed.key_id)
        if record is None or not apikeys.secret_matches(parsed.secret, record.secret_hash):
            return None
        key = record.key
        # SECURITY: a revoked or expired key must stop working at once, on every replica.
        if key.revoked_at is not None or (key.expires_at or float("inf")) <= self._clock():
            return None
        # SECURITY: tenant confusion; the principal's tenant is the one stored with the key.
        tenant = await self._store.get_tenant(key.tenant_id)
        account = await self._store.get_service_account(key.tenant_id, key.service_account_id)
        if tenant is None or account is None:
            return None
        return ApiKeyPrincipal(tenant, account, key.id, account.roles)

    async def create_tenant(self, slug: str, actor: Actor, ctx: RequestContext) -> Tenant:
        """A new tenant without members (CLI bootstrap); `Conflict("tenant")` if taken."""
        tenant = Tenant(new_id("t"), normalize_slug(slug), self._clock())
        event = self._event(
            "tenant.create", actor, ctx, tenant.id, tenant.id, {"slug": tenant.slug}
        )
        await self._store.create_tenant(tenant, event)
        return tenant

    async def create_user(
        self,
        email: str,
        password: str,
        tenant_slug: str,
        role: str,
        actor: Actor,
        ctx: RequestContext,
    ) -> User:
        """Makes the email a member of the tenant with `role` (CLI bootstrap).

        A new email gets an account with `password` (policy applied). An existing account only
        gains the membership; its password is left unchanged and `password` is ignored.
        """
        email, role = normalize_email(email), validate_role(role)
        tenant = await self.tenant_by_slug(tenant_slug)
        if tenant is None:
            raise NotFound("tenant")
        existing, now = await self._store.get_user_by_email(email), self._clock()
        user = existing.user if existing else User(new_id("u"), email, now)
        membership = Membership(tenant.id, user.id, (role,), now)
        details = {"roles": [role]}
        if existing is not None:
            event = self._event("member.add", actor, ctx, tenant.id, user.id, details)
            await self._store.add_membership(membership, event)
            return user
        self._check_password(password, email)
        password_hash = await self._hasher.hash(password)
        event = self._event("user.create", actor, ctx, tenant.id, user.id, details)
        await self._store.create_user(user, password_hash, membership, event)
        return user

    async def grant_operator(self, email: str, actor: Actor, ctx: RequestContext) -> User:
        """Gives the account the platform role `operator`; `NotFound("user")` without one."""
        credentials = await self._store.get_user_by_email(normalize_email(email))
        if credentials is None:
            raise NotFound("user")
        user = credentials.user
        event = self._event("operator.grant", actor, ctx, None, user.id)
        await self._store.grant_operator(user.id, event)
        return user

    async def update_settings(
        self,
        tenant_id: str,
        body: Mapping[str, Any],
        allowed: tuple[Collection[str], Collection[str]],
        actor: Actor,
        ctx: RequestContext,
    ) -> Tenant:
        """Applies a settings PATCH (`allowed` = configured plans and upstreams); audited."""
        tenant = await self._require_tenant(tenant_id)
        updated = apply_settings(tenant, body, *allowed)
        details = {k: v for k, v in settings_view(updated).items() if k in body}
        event = self._event("tenant.update", actor, ctx, tenant_id, tenant_id, details)
        await self._store.update_tenant_settings(updated, event)
        return updated

    async def set_password(
        self, email: str, password: str, actor: Actor, ctx: RequestContext
    ) -> User:
        """Replaces the account's password (policy applied); `NotFound("user")` without one.

        Callers that act for the user revoke their other sessions (issue 13's reset flow).
        """
        credentials = await self._store.get_user_by_email(normalize_email(email))
        if credentials is None:
            raise NotFound("user")
        user = credentials.user
        self._check_password(password, user.email)
        password_hash = await self._hasher.hash(password)
        event = self._event("auth.password_change", actor, ctx, None, user.id)
        await self._store.update_password_hash(user.id, password_hash, event)
        return user

    def _check_password(self, password: str, email: str) -> None:
        try:
            check_password_policy(password, email=email)
        except PasswordPolicyError as exc:
            raise PasswordRejected(exc.message) from None

    async def _require_tenant(self, tenant_id: str) -> Tenant:
        tenant = await self._store.get_tenant(tenant_id)
        if tenant is None:
            raise NotFound("tenant")
        return tenant

    async def _credentials(self, email: str) -> UserCredentials | None:
        try:
            normalized = normalize_email(email)
        except InvalidInput:
            return None
        return await self._store.get_user_by_email(normalized)

    async def _valid_invitation(self, token: str, email: str) -> Invitation:
        if not apikeys.is_well_formed_invitation_token(token):
            raise InvitationInvalid()
        invitation = await self._store.get_invitation_by_token_hash(apikeys.hash_secret(token))
        # SECURITY: a leaked, replayed or forwarded invitation must not admit anyone else.
        if (
            invitation is None
            or invitation.accepted_at is not None
            or invitation.expires_at <= self._clock()
            or invitation.email != email
        ):
            raise InvitationInvalid()
        return invitation

    async def _signin_tenant(
        self, user_id: str, tenant_slug: str | None
    ) -> tuple[Tenant, tuple[str, ...]] | None:
        if tenant_slug is None:
            tenant = await self.default_tenant(user_id)
        else:
            tenant = await self.tenant_by_slug(tenant_slug)
        roles = await self.membership_roles(tenant.id, user_id) if tenant else None
        return (tenant, roles) if tenant and roles else None

    async def _signin_failed(self, ctx: RequestContext, user_id: str | None, reason: str) -> None:
        # Failures go to the platform chain: no tenant, no password, no user for unknown emails.
        details = {"reason": reason}
        event = self._event("auth.signin", ANONYMOUS, ctx, None, user_id, details, "failure")
        await self._store.append_audit(event)

    def _event(
        self,
        action: str,
        actor: Actor,
        ctx: RequestContext,
        tenant_id: str | None,
        target: str | None = None,
        details: dict[str, Any] | None = None,
        outcome: Outcome = "success",
    ) -> AuditEvent:
        """An event stamped with the service clock (`details` must hold no secrets)."""
        return AuditEvent(
            action, actor, outcome, tenant_id, target, ctx, details or {}, ts=self._clock()
        )
