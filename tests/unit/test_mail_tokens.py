"""E-mailed one-time tokens (password reset, e-mail verification) and password change, over
the real SQLite store and the dev outbox. Time is an injected clock."""

from __future__ import annotations

import email
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.audit.events import RequestContext
from gateway.identity.errors import PasswordRejected
from gateway.identity.models import Membership, Tenant, User
from gateway.identity.passwords import Argon2Params, PasswordHasher
from gateway.identity.tokens_email import (
    RESET_TTL,
    VERIFY_TTL,
    AccountService,
    TokenInvalid,
    WrongPassword,
)
from gateway.mail.sender import MailQueue, OutboxMailer
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.identity import SqliteIdentityStore
from tests.contract.test_identity_store import event
from tests.support.clock import ManualClock

CTX = RequestContext(ip="192.0.2.1", user_agent="pytest")
FAST = Argon2Params(time_cost=1, memory_cost=1024, parallelism=1)
OLD, NEW = "plum-tractor-nebula-42", "quiet-harbor-lantern-77"


@dataclass
class World:
    accounts: AccountService
    store: SqliteIdentityStore
    hasher: PasswordHasher
    queue: MailQueue
    outbox: Path
    clock: ManualClock
    user: User
    db: SqliteDatabase

    async def mails(self) -> list[email.message.Message]:
        await self.queue.drain()
        files = sorted(self.outbox.glob("*.eml")) if self.outbox.exists() else []
        return [email.message_from_bytes(p.read_bytes()) for p in files]

    async def last_token(self) -> str:
        body = (await self.mails())[-1].get_payload()
        match = re.search(r"token=([A-Za-z0-9_-]+)", body)
        assert match, body
        return match.group(1)

    async def password_ok(self, password: str) -> bool:
        credentials = await self.store.get_user_by_email(self.user.email)
        assert credentials is not None
        return (await self.hasher.verify(credentials.password_hash, password)).ok

    async def outcomes(self, action: str) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT outcome FROM audit_events WHERE action = ? ORDER BY seq", (action,)
        )
        return [str(r[0]) for r in rows]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    db = await SqliteDatabase.open(tmp_path / "gateway.db")
    store, hasher, clock = SqliteIdentityStore(db), PasswordHasher(FAST), ManualClock()
    user = User("u_1", "ann@example.com", clock.now)
    tenant = Tenant("t_1", "acme", clock.now)
    membership = Membership("t_1", "u_1", ("admin",))
    await store.signup(tenant, user, await hasher.hash(OLD), membership, event("s"))
    outbox = tmp_path / "outbox"
    queue = MailQueue(OutboxMailer(outbox), "gw@example.com")
    accounts = AccountService(store, hasher, queue, "https://gw.example.com/", clock)
    try:
        yield World(accounts, store, hasher, queue, outbox, clock, user, db)
    finally:
        await queue.drain()
        await hasher.close()
        await db.close()


async def test_reset_mails_a_single_use_link(world: World) -> None:
    await world.accounts.request_reset(" ANN@example.com ", CTX)
    [mail] = await world.mails()
    assert mail["To"] == "ann@example.com"
    assert "https://gw.example.com/.gateway/reset/confirm?token=" in mail.get_payload()
    token = await world.last_token()
    raw = (world.outbox.parent / "gateway.db").read_bytes()
    assert token.encode() not in raw
    user = await world.accounts.confirm_reset(token, NEW, CTX)
    assert user.id == world.user.id
    assert await world.password_ok(NEW) and not await world.password_ok(OLD)
    with pytest.raises(TokenInvalid):
        await world.accounts.confirm_reset(token, "another-fine-passphrase-9", CTX)
    assert await world.outcomes("auth.password_reset") == ["success", "failure"]


async def test_reset_of_unknown_address_sends_nothing(world: World) -> None:
    await world.accounts.request_reset("nobody@example.com", CTX)
    await world.accounts.request_reset("not an address", CTX)
    assert await world.mails() == []
    assert await world.outcomes("auth.password_reset_request") == ["success", "success"]


async def test_reset_token_expires(world: World) -> None:
    await world.accounts.request_reset(world.user.email, CTX)
    token = await world.last_token()
    world.clock.now += RESET_TTL
    with pytest.raises(TokenInvalid):
        await world.accounts.confirm_reset(token, NEW, CTX)
    assert await world.password_ok(OLD)


async def test_a_reset_retires_the_other_reset_links(world: World) -> None:
    await world.accounts.request_reset(world.user.email, CTX)
    first = await world.last_token()
    await world.accounts.request_reset(world.user.email, CTX)
    second = await world.last_token()
    await world.accounts.confirm_reset(second, NEW, CTX)
    with pytest.raises(TokenInvalid):
        await world.accounts.confirm_reset(first, OLD, CTX)


async def test_reset_applies_the_password_policy_and_keeps_the_token(world: World) -> None:
    await world.accounts.request_reset(world.user.email, CTX)
    token = await world.last_token()
    with pytest.raises(PasswordRejected):
        await world.accounts.confirm_reset(token, "short", CTX)
    await world.accounts.confirm_reset(token, NEW, CTX)


async def test_tokens_are_bound_to_their_purpose(world: World) -> None:
    await world.accounts.request_verification(world.user, CTX)
    verify_token = await world.last_token()
    with pytest.raises(TokenInvalid):
        await world.accounts.confirm_reset(verify_token, NEW, CTX)
    for junk in ("", "x" * 43, "a" * 200, "../../etc"):
        with pytest.raises(TokenInvalid):
            await world.accounts.verify_email(junk, CTX)


async def test_email_verification_is_single_use_and_expires(world: World) -> None:
    await world.accounts.request_verification(world.user, CTX)
    token = await world.last_token()
    assert (
        "https://gw.example.com/.gateway/verify-email?token="
        in (await world.mails())[-1].get_payload()
    )
    await world.accounts.verify_email(token, CTX)
    stored = await world.store.get_user(world.user.id)
    assert stored is not None and stored.email_verified
    with pytest.raises(TokenInvalid):
        await world.accounts.verify_email(token, CTX)
    await world.accounts.request_verification(world.user, CTX)
    late = await world.last_token()
    world.clock.now += VERIFY_TTL + 1
    with pytest.raises(TokenInvalid):
        await world.accounts.verify_email(late, CTX)
    assert await world.outcomes("auth.email_verify") == ["success", "failure", "failure"]


async def test_password_change_checks_the_current_password(world: World) -> None:
    with pytest.raises(WrongPassword):
        await world.accounts.change_password(world.user.id, "wrong-password-123", NEW, CTX)
    with pytest.raises(PasswordRejected):
        await world.accounts.change_password(world.user.id, OLD, "short", CTX)
    await world.accounts.change_password(world.user.id, OLD, NEW, CTX)
    assert await world.password_ok(NEW)
    assert await world.outcomes("auth.password_change") == ["failure", "success"]
