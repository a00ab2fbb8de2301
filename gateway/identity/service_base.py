"""The state and shared helpers of `IdentityService` (see `gateway.identity.service`).

`IdentityBase` holds the store, the password hasher, the clock and the invitation lifetime,
and the helpers every part of the service uses. It guarantees that:

* every audit event is built by `_event`, stamped with the service clock;
* every password that is set passes `_check_password` (the policy) before it is hashed, and a
  policy failure is `PasswordRejected`;
* an operation on a tenant that does not exist is `NotFound("tenant")` (`_require_tenant`);
* a malformed email looks up as no account (`_credentials`), never as an error.

It is not used on its own: `IdentityService` combines it with the service-account and
administration parts (`service_keys`, `service_admin`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from gateway.audit.events import ClockedEvents
from gateway.identity.errors import InvalidInput, NotFound, PasswordRejected
from gateway.identity.models import Tenant, UserCredentials
from gateway.identity.passwords import PasswordHasher, PasswordPolicyError, check_password_policy
from gateway.identity.validation import is_valid_slug, normalize_email
from gateway.storage.ports import IdentityStore

__all__ = ["INVITATION_TTL", "IdentityBase"]

INVITATION_TTL: Final = 7 * 24 * 3600.0
"""Default lifetime of an invitation, in seconds."""


class IdentityBase(ClockedEvents):
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

    async def tenant_by_slug(self, slug: str) -> Tenant | None:
        """The tenant with this slug (any letter case); None for a malformed slug."""
        normalized = slug.strip().lower() if len(slug) <= 256 else slug
        if not is_valid_slug(normalized):
            return None
        return await self._store.get_tenant_by_slug(normalized)

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
