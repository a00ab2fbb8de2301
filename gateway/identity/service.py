"""The identity service: sign-up, sign-in, invitations, roles, service accounts and API keys.

It is the one place where identity input is validated, passwords are hashed, tokens are made
and hashed, and audit events are built; the `IdentityStore` below it only stores. Every
change is audited in the same transaction as the change itself (the store guarantees that).
Errors are `gateway.identity.errors.IdentityError`s; sign-in and API-key authentication never
raise them and answer `None` for every kind of failure.

`IdentityService` is assembled from parts, each in its own module: the shared state and
helpers (`service_base`), service accounts and API keys (`service_keys`), and member, tenant
and account administration (`service_admin`); this module holds sign-up, sign-in, invitations
and the read-only lookups.
"""

from __future__ import annotations

from gateway.audit.events import ANONYMOUS, Actor, RequestContext
from gateway.identity import apikeys
from gateway.identity.errors import Conflict, InvitationInvalid
from gateway.identity.models import (
    Invitation,
    Membership,
    SigninResult,
    SignupResult,
    Tenant,
    User,
    new_id,
)
from gateway.identity.service_admin import Administration
from gateway.identity.service_base import INVITATION_TTL
from gateway.identity.service_keys import ServiceAccounts
from gateway.identity.validation import normalize_email, normalize_slug, validate_role

__all__ = ["INVITATION_TTL", "IdentityService"]


class IdentityService(ServiceAccounts, Administration):
    """Identity operations over an `IdentityStore` and a `PasswordHasher`.

    `clock` gives the current time in epoch seconds (injectable for tests); every timestamp
    and every expiry decision uses it. The constructor is `IdentityBase`'s:
    `IdentityService(store, hasher, clock=time.time, invitation_ttl=INVITATION_TTL)`.
    """

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
