"""Service accounts and API keys: the machine-identity part of `IdentityService`.

Guarantees:

* a service account or key is created only in an existing tenant (a key only for a service
  account of that same tenant), and every change is audited with it in one transaction;
* an API key's plaintext `gw_<key id>_<secret>` exists only in `create_api_key`'s return
  value: the store keeps the SHA-256 of the secret, and no audit event holds it;
* `authenticate_api_key` answers None for every failure (malformed, unknown, wrong secret,
  revoked, expired, dangling), compares secrets in constant time, and binds the principal to
  the tenant stored with the key, never one named by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.audit.events import Actor, RequestContext
from gateway.identity import apikeys
from gateway.identity.errors import InvalidInput, NotFound
from gateway.identity.models import ApiKey, ApiKeyPrincipal, ServiceAccount, new_id
from gateway.identity.service_base import IdentityBase
from gateway.identity.validation import normalize_roles, validate_name

__all__ = ["ServiceAccounts"]


class ServiceAccounts(IdentityBase):
    """The service-account and API-key operations of `IdentityService`."""

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
