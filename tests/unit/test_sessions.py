"""Unit tests for gateway.sessions: tokens, cookies, the service and the in-process bus."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from gateway.audit.events import Actor, RequestContext
from gateway.config.sections import CookieConfig
from gateway.sessions import tokens
from gateway.sessions.cookies import clear_session_cookie, read_session_token, set_session_cookie
from gateway.sessions.models import SessionRecord
from gateway.sessions.service import SessionService
from gateway.storage.memory.bus import MemoryChangeBus
from gateway.storage.ports import StoreUnavailable
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.sessions import SqliteSessionStore
from tests.support.clock import ManualClock

KEY = b"k" * 32
USER = Actor("user", "u_1")
CTX = RequestContext(ip="192.0.2.9", user_agent="test")
CONFIG = CookieConfig(idle_timeout=1800, lifetime=43200)


class CountingStore(SqliteSessionStore):
    """The real SQLite store, counting the calls the hot path must keep rare."""

    touches = 0
    lookups = 0

    async def touch(self, session_id: str, last_seen_at: float) -> None:
        self.touches += 1
        await super().touch(session_id, last_seen_at)

    async def get_by_token_hash(self, token_hash: str) -> SessionRecord | None:
        self.lookups += 1
        return await super().get_by_token_hash(token_hash)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = await SqliteDatabase.open(tmp_path / "gw.db")
    yield database
    await database.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(db: SqliteDatabase) -> CountingStore:
    return CountingStore(db)


@pytest.fixture
def service(store: CountingStore, clock: ManualClock) -> SessionService:
    return SessionService(store, MemoryChangeBus(), CONFIG, KEY, clock)


async def sign_in(service: SessionService, **kw: Any) -> tuple[str, SessionRecord]:
    return await service.create(
        "u_1", kw.pop("tenant", "t_a"), auth_method="password", ip="192.0.2.1",
        user_agent="ua", **kw,
    )  # fmt: skip


# --- tokens ------------------------------------------------------------------------------


def test_token_is_256_bits_and_only_its_hash_is_derived() -> None:
    token, sid = tokens.new_token(), tokens.new_session_id()
    assert tokens.is_well_formed_token(token)
    assert len(token) == 43
    assert tokens.hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert sid.startswith("s_")
    assert tokens.is_session_id(sid)
    assert not tokens.is_well_formed_token(sid)


@pytest.mark.parametrize("bad", ["", "short", "a" * 42, "a" * 44, "a" * 42 + "!", "é" * 43])
async def test_malformed_tokens_never_reach_the_store(
    service: SessionService, store: CountingStore, bad: str
) -> None:
    assert await service.authenticate(bad) is None
    assert await service.revoke_token(bad, USER, CTX) is False
    assert store.lookups == 0


async def test_csrf_token_verifies_only_for_its_session(service: SessionService) -> None:
    _, mine = await sign_in(service)
    _, other = await sign_in(service)
    token = service.csrf_token(mine)
    assert service.check_csrf(mine, token)
    assert not service.check_csrf(other, token)
    for bad in (None, "", token[:-1], token + "A", "é" * 43, "\ud800"):
        assert not service.check_csrf(mine, bad)


def test_a_short_csrf_key_is_refused(store: CountingStore) -> None:
    with pytest.raises(ValueError, match="csrf_key"):
        SessionService(store, MemoryChangeBus(), CONFIG, b"short")


# --- creation and the store --------------------------------------------------------------


async def test_sign_in_always_issues_a_new_token(service: SessionService) -> None:
    first, a = await sign_in(service)
    second, b = await sign_in(service)
    assert first != second
    assert a.id != b.id
    assert a.id not in first
    assert a.token_hash == tokens.hash_token(first)
    assert (await service.authenticate(first)) == a


async def test_the_store_holds_no_raw_token(
    service: SessionService, db: SqliteDatabase, tmp_path: Path, clock: ManualClock
) -> None:
    token, record = await sign_in(service)
    clock.now += 120
    assert await service.authenticate(token) is not None  # touches the store
    rotated = await service.rotate(record, USER, CTX, reason="role_change")
    assert rotated is not None
    await db.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("gw.db*"))
    assert record.token_hash.encode() in stored  # we are reading the right bytes
    for raw in (token, rotated[0]):
        assert raw.encode() not in stored


async def test_a_half_session_is_short_lived(service: SessionService, clock: ManualClock) -> None:
    _, record = await sign_in(service, mfa_pending=True)
    assert record.expires_at == clock.now + 300


# --- expiry ------------------------------------------------------------------------------


async def test_idle_expiry(service: SessionService, clock: ManualClock) -> None:
    token, _ = await sign_in(service)
    clock.now += 1799
    assert await service.authenticate(token) is not None
    clock.now += 1799  # activity moved the idle deadline
    assert await service.authenticate(token) is not None
    clock.now += 1800
    assert await service.authenticate(token) is None


async def test_absolute_expiry_despite_activity(
    service: SessionService, clock: ManualClock
) -> None:
    token, record = await sign_in(service)
    while clock.now + 1000 < record.expires_at:
        clock.now += 1000
        assert await service.authenticate(token) is not None
    clock.now = record.expires_at
    assert await service.authenticate(token) is None


async def test_idle_check_uses_in_memory_last_seen(
    store: CountingStore, clock: ManualClock
) -> None:
    config = CookieConfig(idle_timeout=600, lifetime=3600)  # touch due after 60 s
    service = SessionService(store, MemoryChangeBus(), config, KEY, clock, cache_ttl=3600)
    token, _ = await sign_in(service)
    clock.now += 590
    assert await service.authenticate(token) is not None  # touched: store says +590
    clock.now += 50
    assert await service.authenticate(token) is not None  # not touched: memory says +640
    clock.now += 590  # idle by the store's copy, not by this process's
    assert await service.authenticate(token) is not None
    assert store.touches == 2
    clock.now += 600
    assert await service.authenticate(token) is None


# --- the hot path ------------------------------------------------------------------------


async def test_touch_is_throttled(
    service: SessionService, store: CountingStore, clock: ManualClock
) -> None:
    token, record = await sign_in(service)
    for _ in range(180):
        clock.now += 1
        assert await service.authenticate(token) is not None
    assert store.touches == 3  # once per 60 s touch interval
    assert store.lookups <= 180
    stored = await store.get(record.id)
    assert stored is not None
    assert stored.last_seen_at == clock.now


async def test_cache_serves_repeat_requests(
    service: SessionService, store: CountingStore, clock: ManualClock
) -> None:
    token, _ = await sign_in(service)
    for _ in range(10):
        assert await service.authenticate(token) is not None
    assert store.lookups == 1


async def test_concurrent_misses_share_one_store_read(
    service: SessionService, store: CountingStore
) -> None:
    token, _ = await sign_in(service)
    service.cache.clear()  # as when the entry expires under load
    records = await asyncio.gather(*[service.authenticate(token) for _ in range(20)])
    assert all(r is not None for r in records)
    assert store.lookups == 1


class GatedStore(CountingStore):
    """Holds the first token lookup, once it has read, until `release` is set."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(db)
        self.first_read = asyncio.Event()
        self.release = asyncio.Event()

    async def get_by_token_hash(self, token_hash: str) -> SessionRecord | None:
        record = await super().get_by_token_hash(token_hash)
        if self.lookups == 1:
            self.first_read.set()
            await self.release.wait()
        return record


async def test_no_request_joins_a_read_that_a_revocation_overtook(
    db: SqliteDatabase, clock: ManualClock
) -> None:
    store = GatedStore(db)
    service = SessionService(store, MemoryChangeBus(), CONFIG, KEY, clock)
    token, record = await sign_in(service)
    service.cache.clear()
    before = asyncio.ensure_future(service.authenticate(token))
    await store.first_read.wait()  # `before` has read the session while it was live
    assert await service.revoke(record.id, USER, CTX, tenant_id=None)
    after = asyncio.ensure_future(service.authenticate(token))
    await asyncio.sleep(0)  # `after` starts: a read of its own, or (wrongly) joins `before`
    store.release.set()
    assert await after is None  # its own read, after the revocation
    assert await before is not None  # read before it: the request raced the revocation
    assert store.lookups == 2


async def test_unreadable_store_raises_store_unavailable(
    service: SessionService, db: SqliteDatabase
) -> None:
    token, _ = await sign_in(service)
    await db.close()
    with pytest.raises(StoreUnavailable):
        await service.authenticate(token)


async def test_a_failed_touch_does_not_deny_a_cached_session(
    store: CountingStore, db: SqliteDatabase, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    service = SessionService(store, MemoryChangeBus(), CONFIG, KEY, clock, cache_ttl=3600)
    token, _ = await sign_in(service)
    assert await service.authenticate(token) is not None
    await db.close()
    clock.now += 120
    with caplog.at_level(logging.WARNING):
        assert await service.authenticate(token) is not None
    assert "session touch failed" in caplog.text


# --- revocation --------------------------------------------------------------------------


async def test_revocation_is_visible_at_once_through_the_bus(
    store: CountingStore, clock: ManualClock
) -> None:
    bus = MemoryChangeBus()
    a = SessionService(store, bus, CONFIG, KEY, clock, cache_ttl=3600)
    b = SessionService(store, bus, CONFIG, KEY, clock, cache_ttl=3600)
    token, record = await sign_in(a)
    assert await b.authenticate(token) is not None  # cached in b
    assert await a.revoke(record.id, USER, CTX, tenant_id=None) is True
    assert await b.authenticate(token) is None


@pytest.mark.parametrize("scope", ["user", "tenant"])
async def test_bulk_revocations_reach_other_caches(
    store: CountingStore, clock: ManualClock, scope: str
) -> None:
    bus = MemoryChangeBus()
    a = SessionService(store, bus, CONFIG, KEY, clock, cache_ttl=3600)
    b = SessionService(store, bus, CONFIG, KEY, clock, cache_ttl=3600)
    token, record = await sign_in(a)
    other_tenant, _ = await sign_in(a, tenant="t_b")
    assert await b.authenticate(token) is not None
    if scope == "user":
        assert record.id in await a.revoke_user("u_1", USER, CTX)
        assert await b.authenticate(other_tenant) is None
    else:
        assert await a.revoke_tenant("t_a", USER, CTX) == [record.id]
        assert await b.authenticate(other_tenant) is not None
    assert await b.authenticate(token) is None


async def test_revoke_user_keeps_the_current_session(service: SessionService) -> None:
    keep_token, keep = await sign_in(service)
    gone_token, gone = await sign_in(service)
    assert await service.revoke_user("u_1", USER, CTX, except_id=keep.id) == [gone.id]
    assert await service.authenticate(keep_token) is not None
    assert await service.authenticate(gone_token) is None


async def test_revocation_reaches_another_process_within_cache_ttl(
    tmp_path: Path, db: SqliteDatabase, clock: ManualClock
) -> None:
    other_db = await SqliteDatabase.open(tmp_path / "gw.db")  # same file, like the CLI
    try:
        web_proc = SessionService(SqliteSessionStore(db), MemoryChangeBus(), CONFIG, KEY, clock)
        cli = SessionService(SqliteSessionStore(other_db), MemoryChangeBus(), CONFIG, KEY, clock)
        token, record = await sign_in(web_proc)
        assert await web_proc.authenticate(token) is not None
        assert await cli.revoke(record.id, Actor("operator"), CTX, tenant_id=None)
        clock.now += 0.5
        assert await web_proc.authenticate(token) is not None  # still cached, no bus
        clock.now += 0.5
        assert await web_proc.authenticate(token) is None
    finally:
        await other_db.close()


async def test_a_tenant_admin_cannot_revoke_another_tenants_session(
    service: SessionService,
) -> None:
    token, record = await sign_in(service, tenant="t_b")
    assert await service.revoke(record.id, USER, CTX, tenant_id="t_a") is False
    assert await service.authenticate(token) is not None
    assert [r.id for r in await service.list_sessions("t_a", None)] == []


async def test_sign_out_revokes_by_token(service: SessionService) -> None:
    token, _ = await sign_in(service)
    assert await service.revoke_token(token, USER, CTX) is True
    assert await service.authenticate(token) is None
    assert await service.list_sessions("t_a", "u_1") == []


async def test_rotate_issues_a_new_session_and_kills_the_old(
    service: SessionService, clock: ManualClock
) -> None:
    old_token, old = await sign_in(service, mfa_pending=True)
    assert await service.authenticate(old_token) is not None
    clock.now += 10
    rotated = await service.rotate(old, USER, CTX, reason="mfa", mfa=True)
    assert rotated is not None
    new_token, new = rotated
    assert (new.id, new_token) != (old.id, old_token)
    assert (new.mfa, new.mfa_pending, new.expires_at) == (True, False, clock.now + 43200)
    assert service.csrf_token(new) != service.csrf_token(old)
    assert await service.authenticate(old_token) is None
    assert await service.authenticate(new_token) == new
    assert await service.rotate(old, USER, CTX, reason="mfa") is None


async def test_a_role_change_rotation_keeps_the_absolute_deadline(
    service: SessionService, clock: ManualClock
) -> None:
    _, old = await sign_in(service)
    clock.now += 100
    rotated = await service.rotate(old, USER, CTX, reason="role_change")
    assert rotated is not None
    assert rotated[1].expires_at == old.expires_at


async def test_a_proven_code_stamps_mfa_at_and_other_rotations_keep_it(
    service: SessionService, clock: ManualClock
) -> None:
    _, signed_in = await sign_in(service)
    assert signed_in.mfa_at is None
    assert not service.mfa_recent(signed_in, 900)
    clock.now += 10
    stepped = await service.rotate(signed_in, USER, CTX, reason="mfa-step-up-totp", mfa=True)
    assert stepped is not None
    verified = stepped[1]
    assert (verified.mfa, verified.mfa_at) == (True, clock.now)
    # Step-up on a full session keeps its absolute deadline (only a half-session's starts).
    assert verified.expires_at == signed_in.expires_at
    clock.now += 100
    role_change = await service.rotate(verified, USER, CTX, reason="privilege-change")
    assert role_change is not None
    assert role_change[1].mfa_at == verified.mfa_at  # a rotation alone proves nothing new


@pytest.mark.parametrize(
    ("age", "window", "recent"),
    [(0, 900, True), (899.9, 900, True), (900, 900, False), (5000, 900, False), (-3, 900, True)],
)
async def test_mfa_recency_follows_the_injected_clock(
    service: SessionService, clock: ManualClock, age: float, window: int, recent: bool
) -> None:
    _, record = await sign_in(service)
    verified = dataclasses.replace(record, mfa=True, mfa_at=clock.now)
    clock.now += age  # negative: another replica's clock ran ahead when it stamped mfa_at
    assert service.mfa_recent(verified, window) is recent
    assert verified.mfa_recent(clock.now, window) is recent


# --- the in-process bus ------------------------------------------------------------------


async def test_bus_delivers_copies_and_survives_a_failing_subscriber(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus, seen = MemoryChangeBus(), []

    async def broken(topic: str, payload: Mapping[str, Any]) -> None:
        raise RuntimeError("boom")

    async def record(topic: str, payload: Mapping[str, Any]) -> None:
        seen.append((topic, payload))

    bus.subscribe(broken)
    unsubscribe = bus.subscribe(record)
    sent = {"ids": ["s_1"]}
    await bus.publish("session.revoked", sent)
    assert seen == [("session.revoked", sent)]
    assert seen[0][1] is not sent
    assert "subscriber failed" in caplog.text
    unsubscribe()
    unsubscribe()
    await bus.publish("session.revoked", sent)
    assert len(seen) == 1


# --- cookies -----------------------------------------------------------------------------


def set_cookie_header(config: CookieConfig, clear: bool = False) -> str:
    response = web.Response()
    if clear:
        clear_session_cookie(response, config)
    else:
        set_session_cookie(response, "tok", config)
    [morsel] = response.cookies.values()
    return morsel.OutputString()


def test_secure_cookie_is_host_prefixed_with_every_flag() -> None:
    header = set_cookie_header(CookieConfig())
    assert header.startswith("__Host-gw_session=tok;")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"):
        assert flag in header
    assert "Domain" not in header


def test_insecure_cookie_is_plainly_named_and_not_secure() -> None:
    header = set_cookie_header(CookieConfig(secure=False))
    assert header.startswith("gw_session=tok;")
    assert "Secure" not in header
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header


def test_configured_name_and_clearing() -> None:
    assert set_cookie_header(CookieConfig(name="sid")).startswith("sid=tok;")
    cleared = set_cookie_header(CookieConfig(), clear=True)
    assert cleared.startswith('__Host-gw_session="";')
    assert "Max-Age=0" in cleared
    assert "Secure" in cleared


@pytest.mark.parametrize(
    ("headers", "config", "expected"),
    [
        (["__Host-gw_session=abc"], CookieConfig(), "abc"),
        (["a=1; __Host-gw_session=abc; b=2"], CookieConfig(), "abc"),
        (["gw_session=abc"], CookieConfig(), None),  # the insecure name under secure config
        (["__Host-gw_session=abc"], CookieConfig(secure=False), None),
        (["gw_session=abc"], CookieConfig(secure=False), "abc"),
        (["gw_session=abc; gw_session=abc"], CookieConfig(secure=False), "abc"),
        (["gw_session=abc; gw_session=evil"], CookieConfig(secure=False), None),
        (["gw_session=abc", "gw_session=evil"], CookieConfig(secure=False), None),
        (["gw_session="], CookieConfig(secure=False), None),
        ([], CookieConfig(), None),
    ],
)
def test_read_session_token(headers: list[str], config: CookieConfig, expected: str | None) -> None:
    request = make_mocked_request("GET", "/", headers=CIMultiDict(("Cookie", h) for h in headers))
    assert read_session_token(request, config) == expected
    if len(headers) == 1:
        assert read_session_token(headers[0], config) == expected
    assert read_session_token(None, config) is None


async def test_revocations_are_audited_with_actor_reason_and_ids(
    service: SessionService, db: SqliteDatabase
) -> None:
    token, record = await sign_in(service)
    assert await service.revoke_token(token, USER, CTX, reason="signout")
    row = await db.fetchone("SELECT record FROM audit_events ORDER BY seq DESC LIMIT 1")
    assert row is not None
    audit = json.loads(row[0])
    # A user ending their own session is recorded as a sign-out.
    assert (audit["action"], audit["target"], audit["tenant_id"]) == (
        "auth.signout", record.id, "t_a",
    )  # fmt: skip
    assert audit["actor"] == {"type": "user", "id": "u_1"}
    assert audit["details"] == {"reason": "signout", "session_ids": [record.id]}
    assert token not in row[0]
    assert record.token_hash not in row[0]
