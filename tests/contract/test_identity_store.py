"""Conformance suite of the IdentityStore port, run over every adapter.

A new adapter adds its name to `BACKENDS` (tests/contract/conftest.py) and a branch in the
`backend` fixture (a fresh, empty, migrated store per test, plus a way to list audit actions).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.audit.chain import GENESIS, chain_hash
from gateway.audit.events import Actor, AuditEvent
from gateway.identity.errors import Conflict, NotFound
from gateway.identity.models import (
    ApiKey,
    Invitation,
    Membership,
    ServiceAccount,
    Tenant,
    User,
    new_id,
)
from gateway.identity.records import EmailToken, MfaRecord
from gateway.storage.ports import IdentityStore
from gateway.storage.postgres.identity import PostgresIdentityStore
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.identity import SqliteIdentityStore
from tests.contract.conftest import BackendKind

SYSTEM = Actor("system")


ChainRow = tuple[str, str, str, str]  # (chain, record JSON, prev_hash, hash), in seq order
CHAIN_SQL = "SELECT chain, record, prev_hash, hash FROM {table} ORDER BY seq"


@dataclass
class Backend:
    store: IdentityStore
    audit_actions: Callable[[], Awaitable[list[str]]]
    audit_chain: Callable[[], Awaitable[list[ChainRow]]]


@pytest.fixture
async def backend(backend_kind: BackendKind, tmp_path: Path) -> AsyncIterator[Backend]:
    if backend_kind.name == "postgres":
        pg = await backend_kind.open_postgres()

        async def pg_actions() -> list[str]:
            rows = await pg.fetch("SELECT action FROM gateway.audit_events ORDER BY seq")
            return [str(row[0]) for row in rows]

        async def pg_chain() -> list[ChainRow]:
            rows = await pg.fetch(CHAIN_SQL.format(table="gateway.audit_events"))
            return [(r[0], r[1], r[2], r[3]) for r in rows]

        try:
            yield Backend(PostgresIdentityStore(pg), pg_actions, pg_chain)
        finally:
            await pg.close()
        return
    db = await SqliteDatabase.open(tmp_path / "identity.db")

    async def actions() -> list[str]:
        rows = await db.fetchall("SELECT action FROM audit_events ORDER BY seq")
        return [str(row[0]) for row in rows]

    async def chain() -> list[ChainRow]:
        rows = await db.fetchall(CHAIN_SQL.format(table="audit_events"))
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    try:
        yield Backend(SqliteIdentityStore(db), actions, chain)
    finally:
        await db.close()


@pytest.fixture
def store(backend: Backend) -> IdentityStore:
    return backend.store


def event(action: str, tenant_id: str | None = None) -> AuditEvent:
    return AuditEvent(action=action, actor=SYSTEM, tenant_id=tenant_id)


async def signup(store: IdentityStore, slug: str, email: str) -> tuple[Tenant, User]:
    now = time.time()
    tenant = Tenant(new_id("t"), slug, now)
    user = User(new_id("u"), email, now)
    membership = Membership(tenant.id, user.id, ("admin",), now)
    await store.signup(tenant, user, "hash-of-" + email, membership, event("auth.signup"))
    return tenant, user


async def service_account(store: IdentityStore, tenant: Tenant, name: str = "ci") -> ServiceAccount:
    account = ServiceAccount(new_id("sa"), tenant.id, name, ("editor",), time.time())
    await store.create_service_account(account, event("service_account.create", tenant.id))
    return account


async def api_key(store: IdentityStore, account: ServiceAccount) -> ApiKey:
    key = ApiKey(new_id("key"), account.tenant_id, account.id, time.time())
    await store.create_api_key(key, "f" * 64, event("apikey.create", account.tenant_id))
    return key


async def test_signup_stores_tenant_user_and_membership(store: IdentityStore) -> None:
    tenant, user = await signup(store, "acme", "ann@example.com")
    assert await store.get_tenant(tenant.id) == tenant
    assert await store.get_tenant_by_slug("acme") == tenant
    assert await store.get_user(user.id) == user
    credentials = await store.get_user_by_email("ann@example.com")
    assert credentials is not None
    assert credentials.user == user
    assert credentials.password_hash == "hash-of-ann@example.com"
    membership = await store.get_membership(tenant.id, user.id)
    assert membership is not None
    assert membership.roles == ("admin",)


async def test_duplicate_email_is_a_conflict_and_writes_nothing(store: IdentityStore) -> None:
    await signup(store, "acme", "ann@example.com")
    with pytest.raises(Conflict) as caught:
        await signup(store, "other", "ann@example.com")
    assert caught.value.field == "email"
    assert await store.get_tenant_by_slug("other") is None


async def test_emails_are_unique_whatever_their_case(store: IdentityStore) -> None:
    _, ann = await signup(store, "acme", "ann@example.com")
    with pytest.raises(Conflict) as caught:
        await signup(store, "other", "ANN@Example.com")
    assert caught.value.field == "email"
    found = await store.get_user_by_email("ann@example.com")
    assert found is not None
    assert found.user == ann


async def test_duplicate_slug_is_a_conflict(store: IdentityStore) -> None:
    await signup(store, "acme", "ann@example.com")
    with pytest.raises(Conflict) as caught:
        await signup(store, "acme", "bob@example.com")
    assert caught.value.field == "tenant"
    assert await store.get_user_by_email("bob@example.com") is None


async def test_racing_signups_with_one_email_have_exactly_one_winner(store: IdentityStore) -> None:
    results = await asyncio.gather(
        *(signup(store, f"tenant-{i}", "race@example.com") for i in range(5)),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, Conflict) and r.field == "email" for r in losers)


async def invite(store: IdentityStore, tenant: Tenant, token_hash: str, expires_in: float) -> str:
    invitation = Invitation(
        new_id("inv"), tenant.id, "new@example.com", "editor", time.time() + expires_in
    )
    await store.create_invitation(invitation, token_hash, event("invitation.create", tenant.id))
    return invitation.id


async def accept(store: IdentityStore, tenant: Tenant, invitation_id: str, email: str) -> User:
    user = User(new_id("u"), email, time.time())
    membership = Membership(tenant.id, user.id, ("editor",), user.created_at)
    await store.accept_invitation(invitation_id, user, "h", membership, event("auth.signup"))
    return user


async def test_invitation_is_single_use_under_a_race(store: IdentityStore) -> None:
    tenant, _ = await signup(store, "acme", "ann@example.com")
    invitation_id = await invite(store, tenant, "a" * 64, 3600)
    results = await asyncio.gather(
        *(accept(store, tenant, invitation_id, f"u{i}@example.com") for i in range(4)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, User)]
    assert len(winners) == 1
    assert all(
        isinstance(r, Conflict) and r.field == "invitation" for r in results if r not in winners
    )
    stored = await store.get_invitation_by_token_hash("a" * 64)
    assert stored is not None
    assert stored.accepted_at is not None
    for i in range(4):
        found = await store.get_user_by_email(f"u{i}@example.com")
        assert found is None or found.user == winners[0]  # the losers wrote nothing


async def test_expired_invitation_cannot_be_accepted(store: IdentityStore) -> None:
    tenant, _ = await signup(store, "acme", "ann@example.com")
    invitation_id = await invite(store, tenant, "b" * 64, -1)
    with pytest.raises(Conflict):
        await accept(store, tenant, invitation_id, "late@example.com")
    assert await store.get_user_by_email("late@example.com") is None


async def test_invitation_cannot_be_used_for_another_tenant(store: IdentityStore) -> None:
    tenant_a, _ = await signup(store, "acme", "ann@example.com")
    tenant_b, _ = await signup(store, "beta", "bob@example.com")
    invitation_id = await invite(store, tenant_a, "c" * 64, 3600)
    with pytest.raises(Conflict):
        await accept(store, tenant_b, invitation_id, "sneaky@example.com")


async def test_memberships_are_per_tenant(store: IdentityStore) -> None:
    tenant_a, ann = await signup(store, "acme", "ann@example.com")
    tenant_b, bob = await signup(store, "beta", "bob@example.com")
    assert await store.get_membership(tenant_b.id, ann.id) is None
    with pytest.raises(NotFound):
        await store.set_membership_roles(tenant_b.id, ann.id, ("admin",), event("member.roles"))
    await store.add_membership(
        Membership(tenant_b.id, ann.id, ("viewer",), time.time()), event("member.add")
    )
    assert [m.tenant_id for m in await store.list_memberships(ann.id)] == [tenant_a.id, tenant_b.id]
    with pytest.raises(Conflict) as caught:
        await store.add_membership(
            Membership(tenant_b.id, ann.id, ("admin",), time.time()), event("member.add")
        )
    assert caught.value.field == "membership"
    await store.set_membership_roles(tenant_b.id, ann.id, ("editor", "viewer"), event("m"))
    membership = await store.get_membership(tenant_b.id, ann.id)
    assert membership is not None
    assert membership.roles == ("editor", "viewer")
    assert (await store.get_membership(tenant_b.id, bob.id)) is not None


async def test_service_accounts_of_one_tenant_are_invisible_to_another(
    store: IdentityStore,
) -> None:
    tenant_a, _ = await signup(store, "acme", "ann@example.com")
    tenant_b, _ = await signup(store, "beta", "bob@example.com")
    account = await service_account(store, tenant_a)
    assert await store.get_service_account(tenant_a.id, account.id) == account
    assert await store.get_service_account(tenant_b.id, account.id) is None
    assert await store.list_service_accounts(tenant_b.id) == []
    assert await store.list_service_accounts(tenant_a.id) == [account]
    with pytest.raises(Conflict) as caught:
        await service_account(store, tenant_a, "ci")
    assert caught.value.field == "service_account"
    await service_account(store, tenant_b, "ci")  # the same name in another tenant is fine


async def test_api_key_of_one_tenant_cannot_be_revoked_through_another(
    store: IdentityStore,
) -> None:
    tenant_a, _ = await signup(store, "acme", "ann@example.com")
    tenant_b, _ = await signup(store, "beta", "bob@example.com")
    key = await api_key(store, await service_account(store, tenant_a))
    with pytest.raises(NotFound):
        await store.revoke_api_key(tenant_b.id, key.id, time.time(), event("apikey.revoke"))
    record = await store.get_api_key(key.id)
    assert record is not None
    assert record.key.revoked_at is None
    assert record.key.tenant_id == tenant_a.id
    assert await store.list_api_keys(tenant_b.id, key.service_account_id) == []
    revoked = await store.revoke_api_key(tenant_a.id, key.id, 123.0, event("apikey.revoke"))
    assert revoked.revoked_at == 123.0
    again = await store.revoke_api_key(tenant_a.id, key.id, 456.0, event("apikey.revoke"))
    assert again.revoked_at == 123.0


async def test_api_key_must_belong_to_a_service_account_of_its_tenant(
    store: IdentityStore,
) -> None:
    tenant_a, _ = await signup(store, "acme", "ann@example.com")
    tenant_b, _ = await signup(store, "beta", "bob@example.com")
    account = await service_account(store, tenant_a)
    key = ApiKey(new_id("key"), tenant_b.id, account.id, time.time())
    with pytest.raises(NotFound):
        await store.create_api_key(key, "0" * 64, event("apikey.create"))
    assert await store.get_api_key(key.id) is None


async def test_operators(store: IdentityStore) -> None:
    _, ann = await signup(store, "acme", "ann@example.com")
    assert not await store.is_operator(ann.id)
    await store.grant_operator(ann.id, event("operator.grant"))
    await store.grant_operator(ann.id, event("operator.grant"))
    assert await store.is_operator(ann.id)


async def test_update_password_hash(store: IdentityStore) -> None:
    _, ann = await signup(store, "acme", "ann@example.com")
    await store.update_password_hash(ann.id, "new-hash", event("auth.signin"))
    credentials = await store.get_user_by_email("ann@example.com")
    assert credentials is not None
    assert credentials.password_hash == "new-hash"
    with pytest.raises(NotFound):
        await store.update_password_hash("u_missing", "x", event("auth.signin"))


async def test_audit_event_is_written_with_the_change(backend: Backend) -> None:
    store = backend.store
    await signup(store, "acme", "ann@example.com")
    assert await backend.audit_actions() == ["auth.signup"]


async def test_audit_event_of_a_failed_change_is_rolled_back(backend: Backend) -> None:
    store = backend.store
    tenant, ann = await signup(store, "acme", "ann@example.com")
    with pytest.raises(Conflict):
        await signup(store, "acme", "bob@example.com")
    with pytest.raises(NotFound):
        await store.set_membership_roles(tenant.id, "u_missing", ("admin",), event("member.roles"))
    with pytest.raises(NotFound):
        await store.revoke_api_key(tenant.id, "key_missing", 1.0, event("apikey.revoke"))
    with pytest.raises(Conflict):
        await store.add_membership(
            Membership(tenant.id, ann.id, ("viewer",), 1.0), event("member.add")
        )
    assert await backend.audit_actions() == ["auth.signup"]


async def test_append_audit_records_an_event_alone(backend: Backend) -> None:
    await backend.store.append_audit(event("auth.signin"))
    assert await backend.audit_actions() == ["auth.signin"]


async def test_lookups_of_missing_rows_return_none(store: IdentityStore) -> None:
    assert await store.get_tenant("t_missing") is None
    assert await store.get_tenant_by_slug("missing") is None
    assert await store.get_user("u_missing") is None
    assert await store.get_user_by_email("nobody@example.com") is None
    assert await store.get_invitation_by_token_hash("0" * 64) is None
    assert await store.get_api_key("key_missing") is None
    assert await store.list_memberships("u_missing") == []


async def test_concurrent_events_form_one_unbroken_chain_per_tenant(backend: Backend) -> None:
    tenants = ["t_a", "t_b", None]
    await asyncio.gather(
        *(backend.store.append_audit(event("auth.signin", tenants[i % 3])) for i in range(24))
    )
    last: dict[str, str] = {}
    rows = await backend.audit_chain()
    for chain, record, prev_hash, digest in rows:
        assert prev_hash == last.get(chain, GENESIS)
        assert digest == chain_hash(prev_hash, json.loads(record))
        last[chain] = digest
    assert len(rows) == 24
    assert set(last) == {"t_a", "t_b", "platform"}


# --- MFA and e-mailed tokens (issue 13) ---------------------------------------------------


def mfa_record(user: User, now: float) -> MfaRecord:
    return MfaRecord(user.id, "v1:sealed", now)


async def test_mfa_enrolment_confirm_and_steps(backend: Backend) -> None:
    store = backend.store
    _, user = await signup(store, "acme", "ann@example.com")
    now = time.time()
    assert await store.get_mfa(user.id) is None
    await store.put_mfa_enrollment(mfa_record(user, now), ("h1", "h2"), event("mfa.enroll"))
    record = await store.get_mfa(user.id)
    assert record is not None and not record.enabled and record.last_step == -1
    assert not await store.use_totp_step(user.id, 5, event("auth.mfa"))  # not enabled yet
    assert not await store.use_recovery_code(user.id, "h1", now, event("auth.mfa"))
    assert await store.enable_mfa(user.id, now, 10, event("mfa.enable"))
    assert not await store.enable_mfa(user.id, now, 11, event("mfa.enable"))
    enabled = await store.get_mfa(user.id)
    assert enabled is not None and enabled.enabled and enabled.last_step == 10
    assert not await store.use_totp_step(user.id, 10, event("auth.mfa"))  # replay
    assert await store.use_totp_step(user.id, 11, event("auth.mfa"))
    assert not await store.use_totp_step(user.id, 9, event("auth.mfa"))
    with pytest.raises(Conflict) as caught:
        await store.put_mfa_enrollment(mfa_record(user, now), ("h3",), event("mfa.enroll"))
    assert caught.value.field == "mfa"
    actions = await backend.audit_actions()
    assert actions.count("auth.mfa") == 1 and actions.count("mfa.enable") == 1


async def test_recovery_codes_are_single_use_even_when_racing(backend: Backend) -> None:
    store = backend.store
    _, user = await signup(store, "acme", "ann@example.com")
    now = time.time()
    await store.put_mfa_enrollment(mfa_record(user, now), ("h1", "h2"), event("mfa.enroll"))
    await store.enable_mfa(user.id, now, 1, event("mfa.enable"))
    results = await asyncio.gather(
        *(store.use_recovery_code(user.id, "h1", now, event("auth.mfa")) for _ in range(5))
    )
    assert sorted(results) == [False, False, False, False, True]
    assert await store.count_recovery_codes(user.id) == 1
    steps = await asyncio.gather(*(store.use_totp_step(user.id, 7, event("x")) for _ in range(5)))
    assert sorted(steps) == [False, False, False, False, True]
    assert (await backend.audit_actions()).count("auth.mfa") == 1


async def test_re_enrolment_replaces_codes_and_delete_removes_all(backend: Backend) -> None:
    store = backend.store
    _, user = await signup(store, "acme", "ann@example.com")
    now = time.time()
    await store.put_mfa_enrollment(mfa_record(user, now), ("a", "b"), event("mfa.enroll"))
    await store.put_mfa_enrollment(MfaRecord(user.id, "v1:new", now), ("c",), event("e"))
    record = await store.get_mfa(user.id)
    assert record is not None and record.secret_ciphertext == "v1:new"
    assert await store.count_recovery_codes(user.id) == 1
    assert await store.delete_mfa(user.id, event("mfa.disable"))
    assert not await store.delete_mfa(user.id, event("mfa.disable"))
    assert await store.get_mfa(user.id) is None
    assert await store.count_recovery_codes(user.id) == 0


async def test_email_tokens_are_redeemed_once_and_not_after_expiry(backend: Backend) -> None:
    store = backend.store
    _, user = await signup(store, "acme", "ann@example.com")
    now = time.time()
    verify = EmailToken(user.id, "verify", user.email, now, now + 60)
    await store.create_email_token(verify, "tv", event("auth.email_verify_request"))
    assert await store.get_email_token("tv") == verify
    assert await store.redeem_email_token("tv", "reset", now, event("x"), "h") is None
    assert await store.redeem_email_token("tv", "verify", now + 60, event("x")) is None
    results = await asyncio.gather(
        *(
            store.redeem_email_token("tv", "verify", now, event("auth.email_verify"))
            for _ in range(4)
        )
    )
    assert [r is not None for r in results].count(True) == 1
    verified = await store.get_user(user.id)
    assert verified is not None and verified.email_verified
    used = await store.get_email_token("tv")
    assert used is not None and used.used_at == now
    assert (await backend.audit_actions()).count("auth.email_verify") == 1


async def test_reset_tokens_set_the_password_and_retire_siblings(backend: Backend) -> None:
    store = backend.store
    _, user = await signup(store, "acme", "ann@example.com")
    now = time.time()
    for name in ("r1", "r2"):
        token = EmailToken(user.id, "reset", user.email, now, now + 60)
        await store.create_email_token(token, name, event("auth.password_reset_request"))
    redeemed = await store.redeem_email_token("r1", "reset", now, event("r"), "new-hash")
    assert redeemed is not None and redeemed.user_id == user.id
    credentials = await store.get_user_by_email(user.email)
    assert credentials is not None and credentials.password_hash == "new-hash"
    assert await store.redeem_email_token("r2", "reset", now, event("r"), "other") is None
    with pytest.raises(NotFound):
        ghost = EmailToken("u_missing", "reset", "x@example.com", now, now + 60)
        await store.create_email_token(ghost, "r3", event("r"))
