"""`Directory.membership`: one hot-path lookup that answers as the four cached lookups would,
never staler than the oldest entry it was built from, forgotten on every change notice."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from gateway.audit.events import Actor, RequestContext
from gateway.config import CookieConfig
from gateway.identity.authn import Authenticator
from gateway.identity.directory import MEMBERSHIP_CHANGED, Directory, NoMembership, TenantMember
from gateway.identity.passwords import Argon2Params, PasswordHasher
from gateway.identity.principal import Principal
from gateway.identity.service import IdentityService
from gateway.sessions.models import SessionRecord
from gateway.sessions.service import SessionService
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.identity import SqliteIdentityStore
from tests.support.clock import ManualClock

FAST = Argon2Params(time_cost=1, memory_cost=1024, parallelism=1)
CTX = RequestContext(ip="192.0.2.1", user_agent="pytest", request_id="req-1")
ADMIN = Actor("user", "u_admin")
TTL = 1.0


@dataclass
class World:
    service: IdentityService
    directory: Directory
    clock: ManualClock
    tenant_id: str
    slug: str
    user_id: str
    reads: list[str]

    async def member(self, by_slug: bool = True) -> TenantMember | NoMembership:
        slug = self.slug if by_slug else None
        return await self.directory.membership(slug, self.tenant_id, self.user_id)

    async def set_roles(self, *roles: str) -> None:
        await self.service.set_roles(self.tenant_id, self.user_id, roles, ADMIN, CTX)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    db = await SqliteDatabase.open(tmp_path / "gateway.db")
    hasher = PasswordHasher(FAST)
    clock = ManualClock()
    service = IdentityService(SqliteIdentityStore(db), hasher, clock=clock)
    try:
        made = await service.signup("ann@example.com", "correct horse battery", "acme", CTX)
        reads: list[str] = []
        original = service.membership_roles

        async def counted_roles(tenant_id: str, user_id: str) -> tuple[str, ...] | None:
            reads.append("roles")
            return await original(tenant_id, user_id)

        service.membership_roles = counted_roles  # type: ignore[method-assign]
        directory = Directory(service, ttl=TTL, clock=clock)
        yield World(service, directory, clock, made.tenant.id, "acme", made.user.id, reads)
    finally:
        await hasher.close()
        await db.close()


async def test_it_answers_as_the_separate_lookups_and_then_without_reading(world: World) -> None:
    for by_slug in (True, False):
        found = await world.member(by_slug)
        assert isinstance(found, TenantMember)
        assert found.tenant == await world.directory.tenant_by_id(world.tenant_id)
        assert found.user == await world.directory.user(world.user_id)
        assert found.roles == ("admin",)
        assert found.is_operator is False
    world.reads.clear()
    world.clock.now += TTL / 2
    assert isinstance(await world.member(), TenantMember)
    assert world.reads == []


async def test_a_change_notice_is_seen_at_once(world: World) -> None:
    await world.member()
    await world.set_roles("viewer")
    await world.directory.on_change(
        MEMBERSHIP_CHANGED, {"tenant_id": world.tenant_id, "user_id": world.user_id}
    )
    found = await world.member()
    assert isinstance(found, TenantMember)
    assert found.roles == ("viewer",)


async def test_it_expires_with_the_oldest_entry_it_was_built_from(world: World) -> None:
    await world.directory.tenant_by_slug(world.slug)  # the tenant entry is the oldest
    world.clock.now += 0.6 * TTL
    await world.member()  # roles, user and operator entries loaded now
    # No notice for either change: only expiry can reveal them.
    await world.service.update_settings(
        world.tenant_id, {"features": ["beta"]}, ((), ()), ADMIN, CTX
    )
    await world.set_roles("viewer")
    world.clock.now += 0.5 * TTL  # past the tenant entry's expiry, not the others'
    found = await world.member()
    assert isinstance(found, TenantMember)
    assert found.tenant.features == ("beta",)
    assert found.roles == ("admin",)  # that entry is within its own TTL
    world.clock.now += 0.6 * TTL  # now every entry of the first answer has expired
    found = await world.member()
    assert isinstance(found, TenantMember)
    assert found.roles == ("viewer",)


async def test_concurrent_requests_on_a_cold_cache_read_once(world: World) -> None:
    # 20 requests of one user arrive together as the entries expire: one read, not 20.
    world.clock.now += 2 * TTL
    found = await asyncio.gather(*[world.member() for _ in range(20)])
    assert all(isinstance(f, TenantMember) and f.roles == ("admin",) for f in found)
    assert world.reads == ["roles"]


async def test_a_notice_during_the_read_keeps_the_answer_from_being_remembered(
    world: World,
) -> None:
    service = world.service
    original = service.user_by_id

    async def notice_mid_read(user_id: str) -> object:
        await world.set_roles("viewer")
        await world.directory.on_change(
            MEMBERSHIP_CHANGED, {"tenant_id": world.tenant_id, "user_id": world.user_id}
        )
        # A concurrent request reads the new roles into the cache meanwhile.
        assert await world.directory.roles(world.tenant_id, world.user_id) == ("viewer",)
        return await original(user_id)

    service.user_by_id = notice_mid_read  # type: ignore[method-assign,assignment]
    first = await world.member()
    assert isinstance(first, TenantMember)
    assert first.roles == ("admin",)  # read before the change: in flight, as before
    service.user_by_id = original  # type: ignore[method-assign]
    found = await world.member()
    assert isinstance(found, TenantMember)
    assert found.roles == ("viewer",)


async def test_refusals_are_answered_and_not_remembered(world: World) -> None:
    unknown = await world.directory.membership("nope", "", world.user_id)
    assert unknown is NoMembership.TENANT_UNKNOWN
    stranger = await world.directory.membership(world.slug, "", "u_stranger")
    assert stranger is NoMembership.NOT_A_MEMBER
    world.reads.clear()
    world.clock.now += TTL * 1.01
    assert await world.directory.membership(world.slug, "", "u_stranger") is (
        NoMembership.NOT_A_MEMBER
    )
    assert world.reads == ["roles"]


def authenticator(world: World) -> Authenticator:
    # from_session reads the directory only; the session service is not consulted.
    return Authenticator(world.service, world.directory, cast(SessionService, None), CookieConfig())


def session_record(world: World, last_seen: float) -> SessionRecord:
    return SessionRecord(
        id="s_1", token_hash="h", user_id=world.user_id, tenant_id=world.tenant_id,
        created_at=world.clock.now, last_seen_at=last_seen, expires_at=world.clock.now + 3600,
        idle_timeout=600,
    )  # fmt: skip


async def test_a_principal_is_reused_only_while_made_of_the_same_objects(world: World) -> None:
    authn = authenticator(world)
    record = session_record(world, world.clock.now)
    first = await authn.from_session(record, None)
    assert isinstance(first, Principal) and first.roles == ("admin",)
    assert await authn.from_session(record, None) is first  # the same record and membership
    touched = dataclasses.replace(record, last_seen_at=world.clock.now + 1)
    second = await authn.from_session(touched, None)
    assert second is not first and isinstance(second, Principal)
    assert second.session is touched
    await world.set_roles("viewer")
    await world.directory.on_change(
        MEMBERSHIP_CHANGED, {"tenant_id": world.tenant_id, "user_id": world.user_id}
    )
    third = await authn.from_session(touched, None)  # a new membership object
    assert isinstance(third, Principal) and third.roles == ("viewer",)
