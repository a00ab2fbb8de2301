"""Tenant and account administration: the operator/admin part of `IdentityService`.

Member roles, tenant settings, and the CLI bootstrap operations (tenants, users, the platform
role `operator`, passwords). Guarantees:

* input is validated (roles, emails, slugs, settings) before anything is stored, and a
  missing tenant, user or membership is `NotFound`;
* every password that is set passes the password policy and is stored only as its hash; no
  audit event holds a password;
* every change is audited, with the acting `actor`, in the same transaction as the change.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from gateway.audit.events import Actor, RequestContext
from gateway.identity.errors import NotFound
from gateway.identity.models import Membership, Tenant, User, new_id
from gateway.identity.service_base import IdentityBase
from gateway.identity.settings import apply_settings, settings_view
from gateway.identity.validation import (
    normalize_email,
    normalize_roles,
    normalize_slug,
    validate_role,
)

__all__ = ["Administration"]


class Administration(IdentityBase):
    """The member, tenant and account management operations of `IdentityService`."""

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
