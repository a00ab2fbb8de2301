"""Storage ports: the Protocols every storage backend implements.

Adapters are dumb (DESIGN principle 5): they store what they are given and enforce only
uniqueness and referential integrity. Hashing, validation and policy live above the ports.
Every method that touches tenant data takes the tenant id (principle 8). Each port's
conformance suite is in `tests/contract/`.

Each port lives in its own delimited section; edit only your own.
"""

from __future__ import annotations

from typing import Protocol

from gateway.audit.events import AuditEvent
from gateway.identity.models import (
    ApiKey,
    ApiKeyRecord,
    Invitation,
    Membership,
    ServiceAccount,
    Tenant,
    User,
    UserCredentials,
)
from gateway.identity.records import EmailToken, MfaRecord, TokenPurpose

# ============================================================================================
# BEGIN IdentityStore (identity namespace: tenants, users, memberships, invitations, operators,
# service accounts, API keys)
# ============================================================================================


class IdentityStore(Protocol):
    """Identity records of every tenant, kept apart from all other data.

    Guarantees of every adapter:

    * a unique email, a unique tenant slug, one membership per (tenant, user) and a unique
      service-account name per tenant are enforced by the database: of two racing writers one
      wins and the other gets `gateway.identity.errors.Conflict(field)` with `field` one of
      `email`, `tenant`, `membership`, `service_account`, `invitation`;
    * a reference to a missing tenant, user or service account raises `NotFound`;
    * an unreachable or failing backend raises `StoreUnavailable` (callers fail closed, 503);
    * every mutating method writes its `AuditEvent` in the same transaction as the change: both
      happen or neither does;
    * a method that returns tenant data is told the tenant and returns only that tenant's rows.
      The bootstrap exceptions are lookups by a credential (`get_api_key` by key id, after which
      the caller checks the secret and binds to the key's tenant, and
      `get_invitation_by_token_hash`), and `list_memberships` of one user, which is that
      user's own data across tenants.

    Emails and slugs are matched exactly as given: callers normalize them first.
    """

    async def signup(
        self,
        tenant: Tenant,
        user: User,
        password_hash: str,
        membership: Membership,
        event: AuditEvent,
    ) -> None:
        """Creates the tenant, the user and the user's membership in it, atomically."""

    async def create_tenant(self, tenant: Tenant, event: AuditEvent) -> None:
        """Creates a tenant."""

    async def update_tenant_settings(self, tenant: Tenant, event: AuditEvent) -> None:
        """Replaces the tenant's settings (features, plan, upstream, require_mfa) by
        `tenant`'s; `NotFound("tenant")` when it does not exist."""

    async def create_user(
        self, user: User, password_hash: str, membership: Membership, event: AuditEvent
    ) -> None:
        """Creates a user and their membership in an existing tenant, atomically."""

    async def accept_invitation(
        self,
        invitation_id: str,
        user: User,
        password_hash: str,
        membership: Membership,
        event: AuditEvent,
    ) -> None:
        """Marks the invitation accepted (at `user.created_at`) and creates the user and their
        membership, atomically. An invitation is accepted at most once, even under a race:
        the loser (or any call on an accepted, expired or unknown invitation) gets
        `Conflict("invitation")` and nothing is written."""

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """The tenant with this id."""

    async def get_tenant_by_slug(self, slug: str) -> Tenant | None:
        """The tenant with this slug."""

    async def get_user(self, user_id: str) -> User | None:
        """The user with this id."""

    async def get_user_by_email(self, email: str) -> UserCredentials | None:
        """The user with this (normalized) email, with their password hash."""

    async def update_password_hash(
        self, user_id: str, password_hash: str, event: AuditEvent
    ) -> None:
        """Replaces the user's password hash; `NotFound("user")` when there is no such user."""

    async def list_memberships(self, user_id: str) -> list[Membership]:
        """The user's memberships, oldest first."""

    async def get_membership(self, tenant_id: str, user_id: str) -> Membership | None:
        """The user's membership in this tenant."""

    async def add_membership(self, membership: Membership, event: AuditEvent) -> None:
        """Adds a membership; `Conflict("membership")` if the user is already a member."""

    async def set_membership_roles(
        self, tenant_id: str, user_id: str, roles: tuple[str, ...], event: AuditEvent
    ) -> None:
        """Replaces the roles of a membership; `NotFound("membership")` if there is none."""

    async def create_invitation(
        self, invitation: Invitation, token_hash: str, event: AuditEvent
    ) -> None:
        """Stores an invitation with the hash of its token."""

    async def get_invitation_by_token_hash(self, token_hash: str) -> Invitation | None:
        """The invitation whose token hashes to `token_hash` (a credential lookup)."""

    async def grant_operator(self, user_id: str, event: AuditEvent) -> None:
        """Makes the user a platform operator; granting twice is harmless."""

    async def is_operator(self, user_id: str) -> bool:
        """Whether the user is a platform operator."""

    async def create_service_account(self, account: ServiceAccount, event: AuditEvent) -> None:
        """Creates a service account in `account.tenant_id`."""

    async def get_service_account(self, tenant_id: str, account_id: str) -> ServiceAccount | None:
        """The service account with this id in this tenant."""

    async def list_service_accounts(self, tenant_id: str) -> list[ServiceAccount]:
        """The tenant's service accounts, oldest first."""

    async def create_api_key(self, key: ApiKey, secret_hash: str, event: AuditEvent) -> None:
        """Stores a key of a service account of `key.tenant_id` (`NotFound` if the account is
        not in that tenant)."""

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this id and its secret hash, whatever its tenant (a credential lookup:
        the caller verifies the secret and binds to `record.key.tenant_id`)."""

    async def revoke_api_key(
        self, tenant_id: str, key_id: str, revoked_at: float, event: AuditEvent
    ) -> ApiKey:
        """Revokes the key of this tenant (keeping an earlier revocation time) and returns it;
        `NotFound("api_key")` if the tenant has no such key."""

    async def list_api_keys(self, tenant_id: str, account_id: str) -> list[ApiKey]:
        """The keys of this tenant's service account, oldest first."""

    async def append_audit(self, event: AuditEvent) -> None:
        """Records an event that changes no identity data (e.g. a failed sign-in)."""

    # --- MFA (TOTP enrolment, recovery codes) and e-mailed one-time tokens (issue 13) ---
    # Compare-and-set methods answer False/None when they lose; then nothing, not even their
    # event, is written.

    async def get_mfa(self, user_id: str) -> MfaRecord | None:
        """The user's TOTP enrolment, confirmed or not."""

    async def put_mfa_enrollment(
        self, record: MfaRecord, recovery_hashes: tuple[str, ...], event: AuditEvent
    ) -> None:
        """Stores an unconfirmed enrolment with its recovery-code hashes, replacing an earlier
        unconfirmed one (and its codes); `Conflict("mfa")` while MFA is on."""

    async def enable_mfa(
        self, user_id: str, enabled_at: float, step: int, event: AuditEvent
    ) -> bool:
        """Turns an unconfirmed enrolment on and records `step` as used; False when there is
        no unconfirmed enrolment."""

    async def use_totp_step(self, user_id: str, step: int, event: AuditEvent) -> bool:
        """Records `step` as the last used one if MFA is on and `step` is later than the last
        (so a code is accepted once, even under a race); else False."""

    async def use_recovery_code(
        self, user_id: str, code_hash: str, used_at: float, event: AuditEvent
    ) -> bool:
        """Marks the user's unused recovery code with this hash used (MFA must be on); else
        False."""

    async def count_recovery_codes(self, user_id: str) -> int:
        """How many unused recovery codes the user has left."""

    async def delete_mfa(self, user_id: str, event: AuditEvent) -> bool:
        """Removes the enrolment and recovery codes; False when there was none."""

    async def create_email_token(
        self, token: EmailToken, token_hash: str, event: AuditEvent
    ) -> None:
        """Stores a token with the hash of its secret; `NotFound` for an unknown user."""

    async def get_email_token(self, token_hash: str) -> EmailToken | None:
        """The token whose secret hashes to `token_hash` (a credential lookup), in any state."""

    async def redeem_email_token(
        self,
        token_hash: str,
        purpose: TokenPurpose,
        now: float,
        event: AuditEvent,
        password_hash: str | None = None,
    ) -> EmailToken | None:
        """Marks an unused token of `purpose` that expires after `now` used, and applies it in
        the same transaction: `verify` marks the user's email verified when it is still the
        address the token was sent to; `reset` sets `password_hash` and retires the user's
        other reset tokens. A token is redeemed at most once, even under a race; None (and
        nothing written) otherwise."""


# ============================================================================================
# END IdentityStore
# ============================================================================================


# ============================================================================================
# BEGIN SessionStore (sessions, the change bus, and the errors session code raises)
# ============================================================================================
# Imported here rather than at the top so that each section of this file stays self-contained.
import builtins  # noqa: E402
from collections.abc import Awaitable, Callable, Mapping  # noqa: E402
from typing import Any  # noqa: E402

from gateway.sessions.models import SessionRecord  # noqa: E402


class StoreUnavailable(Exception):
    """A store could not be read or written; callers fail closed (503 `store-unavailable`)."""


class StoreConflict(Exception):
    """A write broke a uniqueness rule (e.g. a duplicate session id); nothing was changed."""


BUS_RESYNC = "bus.resync"
"""Reserved topic, delivered locally: notices may have been lost; drop every cached value."""
BUS_DISCONNECTED = "bus.disconnected"
"""Reserved topic, delivered locally: no notices arrive for now; bound cache ages tightly."""
DEGRADED_CACHE_TTL = 0.25
"""How old a cached value may be while the change bus is disconnected (seconds)."""


class SessionStore(Protocol):
    """Session records by public id and token hash; only the token's SHA-256 is ever stored.

    Every multi-row change is atomic. Revocations and rotation write their audit event in
    the same transaction (the stored event's details gain `session_ids`: the ids revoked).
    `get` and `get_by_token_hash` return records in any state; validity is the caller's call.
    Backend failures raise `StoreUnavailable`; duplicates raise `StoreConflict`.
    """

    async def create(self, record: SessionRecord, audit: AuditEvent | None = None) -> None:
        """Inserts `record` (and writes `audit`, if given, in the same transaction)."""

    async def mark_for_rotation(self, user_id: str, tenant_id: str | None = None) -> list[str]:
        """Flags the user's active sessions (in `tenant_id`, or all) so the next use rotates
        their token; returns their ids."""

    async def get(self, session_id: str) -> SessionRecord | None:
        """The session with this public id, in any state."""

    async def get_by_token_hash(self, token_hash: str) -> SessionRecord | None:
        """The session whose token hashes to `token_hash` (a credential lookup), any state."""

    async def touch(self, session_id: str, last_seen_at: float) -> None:
        """Moves `last_seen_at` forward (never back) on an unrevoked session; no audit."""

    async def revoke(self, session_id: str, ts: float, audit: AuditEvent) -> bool:
        """Revokes one active session; False (and no event) when it was not active."""

    async def revoke_all_for_user(
        self, user_id: str, ts: float, audit: AuditEvent, except_id: str | None = None
    ) -> builtins.list[str]:
        """Revokes the user's active sessions but `except_id`; the event is always written."""

    async def revoke_all_for_tenant(
        self, tenant_id: str, ts: float, audit: AuditEvent
    ) -> builtins.list[str]:
        """Revokes the tenant's active sessions, no other tenant's; the event is always written."""

    async def rotate(self, old_id: str, new_record: SessionRecord, audit: AuditEvent) -> bool:
        """Atomically revokes `old_id` and inserts `new_record`; False and no change when
        `old_id` is not active (a revoked session is never rotated back to life)."""

    async def delete_expired(self, now: float) -> int:
        """Deletes revoked, absolutely expired and idle-expired rows; returns how many."""

    async def list(
        self, tenant_id: str | None, user_id: str | None, *, now: float
    ) -> builtins.list[SessionRecord]:
        """Sessions valid at `now`, filtered by tenant and/or user (None: no filter), oldest
        first. `tenant_id=A` never returns another tenant's sessions."""


BusCallback = Callable[[str, Mapping[str, Any]], Awaitable[None]]


class ChangeBus(Protocol):
    """Fan-out of change notices (revocations, role and policy changes) to every process.

    Payloads are JSON objects. Delivery is best effort: consumers also bound their caches in
    age, so a lost notice delays a change by at most that bound.
    """

    async def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        """Delivers `payload` under `topic` to every subscriber."""

    def subscribe(self, callback: BusCallback) -> Callable[[], None]:
        """Registers `callback(topic, payload)`; returns a function that unsubscribes."""
        ...


# ============================================================================================
# END SessionStore
# ============================================================================================
