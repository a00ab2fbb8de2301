"""IdentityService over the real SQLite store: sign-up, sign-in, invitations, API keys."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.audit.events import CLI_CONTEXT, Actor, RequestContext
from gateway.identity.apikeys import parse_api_key
from gateway.identity.errors import (
    Conflict,
    InvalidInput,
    InvitationInvalid,
    NotFound,
    PasswordRejected,
)
from gateway.identity.passwords import Argon2Params, PasswordHasher
from gateway.identity.service import IdentityService
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.identity import SqliteIdentityStore
from tests.support.clock import ManualClock

FAST = Argon2Params(time_cost=1, memory_cost=1024, parallelism=1)
OTHER = Argon2Params(time_cost=2, memory_cost=1024, parallelism=1)
CTX = RequestContext(ip="192.0.2.1", user_agent="pytest", request_id="req-1")
ADMIN = Actor("user", "u_admin")
PASSWORD = "correct horse battery"


@dataclass
class World:
    service: IdentityService
    store: SqliteIdentityStore
    db: SqliteDatabase
    clock: ManualClock
    path: Path

    def raw_bytes(self) -> bytes:
        """Every byte SQLite holds for the database (main file, WAL and shared memory)."""
        files = sorted(self.path.parent.glob(self.path.name + "*"))
        return b"".join(f.read_bytes() for f in files)

    async def audit(self, action: str) -> list[dict[str, object]]:
        rows = await self.db.fetchall(
            "SELECT record FROM audit_events WHERE action = ? ORDER BY seq", (action,)
        )
        return [json.loads(row[0]) for row in rows]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    path = tmp_path / "gateway.db"
    db = await SqliteDatabase.open(path)
    hasher = PasswordHasher(FAST)
    store = SqliteIdentityStore(db)
    clock = ManualClock()
    try:
        yield World(IdentityService(store, hasher, clock=clock), store, db, clock, path)
    finally:
        await hasher.close()
        await db.close()


async def test_signup_makes_the_user_admin_of_a_new_tenant(world: World) -> None:
    result = await world.service.signup(" Ann@Example.COM ", PASSWORD, "Acme", CTX)
    assert result.user.email == "ann@example.com"
    assert result.tenant.slug == "acme"
    assert result.roles == ("admin",)
    assert result.user.id.startswith("u_")
    assert result.tenant.id.startswith("t_")
    [event] = await world.audit("auth.signup")
    assert event["tenant_id"] == result.tenant.id
    assert event["ip"] == "192.0.2.1"


async def test_signup_conflicts(world: World) -> None:
    await world.service.signup("ann@example.com", PASSWORD, "acme", CTX)
    with pytest.raises(Conflict) as tenant_taken:
        await world.service.signup("bob@example.com", PASSWORD, "acme", CTX)
    assert (tenant_taken.value.field, tenant_taken.value.status) == ("tenant", 409)
    with pytest.raises(Conflict) as email_taken:
        await world.service.signup("ANN@example.com", PASSWORD, "other", CTX)
    assert email_taken.value.field == "email"


@pytest.mark.parametrize(
    ("email", "slug", "field"),
    [
        ("not-an-email", "acme", "email"),
        ("a@b@example.com", "acme", "email"),
        ("ann@localhost", "acme", "email"),
        ("ann@example.com", "-acme", "tenant"),
        ("ann@example.com", "a", "tenant"),
        ("ann@example.com", "admin", "tenant"),
        ("ann@example.com", "acme_corp", "tenant"),
    ],
)
async def test_signup_refuses_bad_input(world: World, email: str, slug: str, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await world.service.signup(email, PASSWORD, slug, CTX)
    assert (caught.value.field, caught.value.status) == (field, 422)


async def test_password_policy_is_a_422_with_the_policy_message(world: World) -> None:
    with pytest.raises(PasswordRejected) as caught:
        await world.service.signup("ann@example.com", "short", "acme", CTX)
    assert caught.value.status == 422
    assert "at least 10 characters" in caught.value.message
    assert await world.service.tenant_by_slug("acme") is None


async def test_signin_happy_paths(world: World) -> None:
    first = await world.service.signup("ann@example.com", PASSWORD, "acme", CTX)
    other = await world.service.create_tenant("beta", ADMIN, CLI_CONTEXT)
    await world.service.create_user("ann@example.com", "", "beta", "viewer", ADMIN, CLI_CONTEXT)
    default = await world.service.signin("ANN@example.com", PASSWORD, None, CTX)
    assert default is not None
    assert (default.user.id, default.tenant, default.roles) == (
        first.user.id,
        first.tenant,
        ("admin",),
    )
    named = await world.service.signin("ann@example.com", PASSWORD, "beta", CTX)
    assert named is not None
    assert (named.tenant, named.roles) == (other, ("viewer",))
    events = await world.audit("auth.signin")
    assert [e["outcome"] for e in events] == ["success", "success"]
    assert [e["tenant_id"] for e in events] == [first.tenant.id, other.id]


async def test_every_signin_failure_is_none(world: World) -> None:
    await world.service.signup("ann@example.com", PASSWORD, "acme", CTX)
    await world.service.signup("bob@example.com", PASSWORD, "beta", CTX)
    await world.service.create_tenant("empty", ADMIN, CLI_CONTEXT)
    failures = [
        ("nobody@example.com", PASSWORD, None),
        ("not an email", PASSWORD, None),
        ("ann@example.com", "wrong password!", None),
        ("ann@example.com", "", None),
        ("ann@example.com", PASSWORD, "beta"),
        ("ann@example.com", PASSWORD, "empty"),
        ("ann@example.com", PASSWORD, "no-such-tenant"),
        ("ann@example.com", PASSWORD, "NOT A SLUG"),
    ]
    for email, password, tenant in failures:
        assert await world.service.signin(email, password, tenant, CTX) is None
    events = await world.audit("auth.signin")
    assert len(events) == len(failures)
    assert all(e["outcome"] == "failure" and e["tenant_id"] is None for e in events)
    assert events[0]["target"] is None  # unknown email: no user id
    assert PASSWORD.encode() not in world.raw_bytes()


async def test_user_without_membership_cannot_sign_in(world: World) -> None:
    result = await world.service.signup("ann@example.com", PASSWORD, "acme", CTX)
    async with world.db.transaction() as conn:
        await conn.execute("DELETE FROM identity_memberships WHERE user_id = ?", (result.user.id,))
    assert await world.service.signin("ann@example.com", PASSWORD, None, CTX) is None
    assert await world.service.default_tenant(result.user.id) is None


async def test_unknown_email_spends_a_dummy_verify(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = PasswordHasher.verify_dummy

    async def spy(self: PasswordHasher, password: str) -> None:
        calls.append("dummy")
        await original(self, password)

    monkeypatch.setattr(PasswordHasher, "verify_dummy", spy)
    assert await world.service.signin("nobody@example.com", PASSWORD, None, CTX) is None
    assert calls == ["dummy"]


async def test_signin_rehashes_when_parameters_change(world: World) -> None:
    await world.service.signup("ann@example.com", PASSWORD, "acme", CTX)
    before = await world.store.get_user_by_email("ann@example.com")
    stronger = PasswordHasher(OTHER)
    try:
        service = IdentityService(world.store, stronger, clock=world.clock)
        assert await service.signin("ann@example.com", PASSWORD, None, CTX) is not None
        after = await world.store.get_user_by_email("ann@example.com")
        assert before is not None
        assert after is not None
        assert after.password_hash != before.password_hash
        assert "t=2" in after.password_hash
        assert (await stronger.verify(after.password_hash, PASSWORD)).needs_rehash is False
        assert await service.signin("ann@example.com", PASSWORD, None, CTX) is not None
    finally:
        await stronger.close()
    events = await world.audit("auth.signin")
    assert [e["details"] for e in events] == [{"rehashed": True}, {}]


async def test_invitation_flow(world: World) -> None:
    acme = await world.service.signup("ann@example.com", PASSWORD, "acme", CTX)
    token, invitation = await world.service.create_invitation(
        acme.tenant.id, "Bob@Example.com", "editor", ADMIN, CTX
    )
    assert invitation.expires_at == world.clock.now + 7 * 24 * 3600
    result = await world.service.signup_with_invitation("bob@example.com", PASSWORD, token, CTX)
    assert (result.tenant, result.roles) == (acme.tenant, ("editor",))
    with pytest.raises(InvitationInvalid):
        await world.service.signup_with_invitation("bob@example.com", PASSWORD, token, CTX)
    assert len(await world.audit("invitation.create")) == 1


async def test_invitation_refusals(world: World) -> None:
    acme = await world.service.signup("ann@example.com", PASSWORD, "acme", CTX)
    tid = acme.tenant.id
    token, _ = await world.service.create_invitation(tid, "bob@example.com", "viewer", ADMIN, CTX)
    signup = world.service.signup_with_invitation
    with pytest.raises(InvitationInvalid):
        await signup("eve@example.com", PASSWORD, token, CTX)  # another email
    with pytest.raises(InvitationInvalid):
        await signup("bob@example.com", PASSWORD, "x" * 43, CTX)  # unknown
    with pytest.raises(InvitationInvalid):
        await signup("bob@example.com", PASSWORD, "not a token", CTX)  # malformed
    world.clock.now += 7 * 24 * 3600
    with pytest.raises(InvitationInvalid) as expired:
        await signup("bob@example.com", PASSWORD, token, CTX)
    assert expired.value.status == 400
    again, _ = await world.service.create_invitation(tid, "ann@example.com", "viewer", ADMIN, CTX)
    with pytest.raises(Conflict):  # already has an account: sign in instead
        await signup("ann@example.com", PASSWORD, again, CTX)
    with pytest.raises(InvalidInput):
        await world.service.create_invitation(tid, "c@example.com", "operator", ADMIN, CTX)


async def test_set_roles(world: World) -> None:
    acme = await world.service.signup("ann@example.com", PASSWORD, "acme", CTX)
    tid, uid = acme.tenant.id, acme.user.id
    roles = await world.service.set_roles(tid, uid, ["viewer", "editor", "viewer"], ADMIN, CTX)
    assert roles == ("editor", "viewer")
    assert await world.service.membership_roles(tid, uid) == ("editor", "viewer")
    with pytest.raises(InvalidInput):
        await world.service.set_roles(tid, uid, ["operator"], ADMIN, CTX)
    with pytest.raises(InvalidInput):
        await world.service.set_roles(tid, uid, [], ADMIN, CTX)
    beta = await world.service.create_tenant("beta", ADMIN, CLI_CONTEXT)
    with pytest.raises(NotFound):
        await world.service.set_roles(beta.id, uid, ["admin"], ADMIN, CTX)
    [event] = await world.audit("member.roles")
    assert event["details"] == {"roles": ["editor", "viewer"]}


async def test_api_key_lifecycle(world: World) -> None:
    acme = await world.service.signup("ann@example.com", PASSWORD, "acme", CTX)
    tid = acme.tenant.id
    account = await world.service.create_service_account(tid, "ci", ["editor"], ADMIN, CTX)
    expires = world.clock.now + 3600
    token, key = await world.service.create_api_key(tid, account.id, expires, ADMIN, CTX)
    assert token.startswith(f"gw_{key.id}_")
    principal = await world.service.authenticate_api_key(token)
    assert principal is not None
    assert (principal.tenant, principal.service_account, principal.key_id, principal.roles) == (
        acme.tenant,
        account,
        key.id,
        ("editor",),
    )
    world.clock.now = expires
    assert await world.service.authenticate_api_key(token) is None
    world.clock.now = expires - 1
    assert await world.service.authenticate_api_key(token) is not None
    await world.service.revoke_api_key(tid, key.id, ADMIN, CTX)
    assert await world.service.authenticate_api_key(token) is None
    assert [e["action"] for e in await world.audit("apikey.create")] == ["apikey.create"]
    assert len(await world.audit("apikey.revoke")) == 1


async def test_another_tenant_cannot_use_or_revoke_a_key(world: World) -> None:
    acme = await world.service.signup("ann@example.com", PASSWORD, "acme", CTX)
    beta = await world.service.signup("bob@example.com", PASSWORD, "beta", CTX)
    account = await world.service.create_service_account(
        acme.tenant.id, "ci", ["viewer"], ADMIN, CTX
    )
    token, key = await world.service.create_api_key(acme.tenant.id, account.id, None, ADMIN, CTX)
    with pytest.raises(NotFound):
        await world.service.revoke_api_key(beta.tenant.id, key.id, ADMIN, CTX)
    with pytest.raises(NotFound):
        await world.service.create_api_key(beta.tenant.id, account.id, None, ADMIN, CTX)
    principal = await world.service.authenticate_api_key(token)
    assert principal is not None
    assert principal.tenant == acme.tenant


async def test_tampered_or_malformed_keys_are_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = await world.service.signup("ann@example.com", PASSWORD, "acme", CTX)
    account = await world.service.create_service_account(
        acme.tenant.id, "ci", ["viewer"], ADMIN, CTX
    )
    token, _ = await world.service.create_api_key(acme.tenant.id, account.id, None, ADMIN, CTX)
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert await world.service.authenticate_api_key(tampered) is None

    async def no_store_access(key_id: str) -> None:
        raise AssertionError("a malformed token reached the store")

    monkeypatch.setattr(world.store, "get_api_key", no_store_access)
    for bad in ["", "gw_", token + "x", token[:-1], token.replace("gw_", "gx_"), f"{token} "]:
        assert await world.service.authenticate_api_key(bad) is None


def test_api_key_format_splits_on_its_own_separators() -> None:
    token = "gw_key_" + "a" * 22 + "_" + "B" * 43
    parsed = parse_api_key(token)
    assert parsed is not None
    assert (parsed.key_id, parsed.secret) == ("key_" + "a" * 22, "B" * 43)
    assert parse_api_key("gw_key_" + "a" * 21 + "_x_" + "B" * 42) is None


async def test_the_store_never_holds_raw_secrets(world: World) -> None:
    acme = await world.service.signup("ann@example.com", PASSWORD, "acme", CTX)
    tid = acme.tenant.id
    invite_token, _ = await world.service.create_invitation(
        tid, "b@example.com", "viewer", ADMIN, CTX
    )
    account = await world.service.create_service_account(tid, "ci", ["viewer"], ADMIN, CTX)
    api_token, _ = await world.service.create_api_key(tid, account.id, None, ADMIN, CTX)
    parsed = parse_api_key(api_token)
    assert parsed is not None
    assert await world.service.signin("ann@example.com", PASSWORD, None, CTX) is not None
    raw = world.raw_bytes()
    assert b"ann@example.com" in raw  # the search does see what the store holds
    for secret in (PASSWORD, invite_token, api_token, parsed.secret):
        assert secret.encode() not in raw


async def test_bootstrap_helpers(world: World) -> None:
    acme = await world.service.create_tenant("acme", ADMIN, CLI_CONTEXT)
    with pytest.raises(Conflict):
        await world.service.create_tenant("ACME", ADMIN, CLI_CONTEXT)
    user = await world.service.create_user(
        "ann@example.com", PASSWORD, "acme", "admin", ADMIN, CLI_CONTEXT
    )
    assert await world.service.membership_roles(acme.id, user.id) == ("admin",)
    with pytest.raises(NotFound):
        await world.service.create_user(
            "x@example.com", PASSWORD, "nope", "admin", ADMIN, CLI_CONTEXT
        )
    with pytest.raises(PasswordRejected):
        await world.service.create_user(
            "y@example.com", "password", "acme", "admin", ADMIN, CLI_CONTEXT
        )
    assert not await world.service.is_operator(user.id)
    await world.service.grant_operator("ANN@example.com", ADMIN, CLI_CONTEXT)
    assert await world.service.is_operator(user.id)
    with pytest.raises(NotFound):
        await world.service.grant_operator("nobody@example.com", ADMIN, CLI_CONTEXT)
    assert await world.service.user_by_id(user.id) == user
    assert await world.service.tenant_by_id(acme.id) == acme
