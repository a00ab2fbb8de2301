"""TOTP MFA over the real SQLite identity store: enrolment, confirmation, replay, recovery
codes, disabling, and the sealed secret. Time is an injected clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest

from gateway.audit.events import RequestContext
from gateway.identity.mfa import (
    RECOVERY_CODES,
    MfaAlreadyEnabled,
    MfaCodeInvalid,
    MfaNotEnrolled,
    MfaService,
    SecretBox,
    matching_step,
    qr_svg,
    recovery_hash,
)
from gateway.identity.models import Membership, Tenant, User
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.identity import SqliteIdentityStore
from tests.contract.test_identity_store import event

CTX = RequestContext(ip="192.0.2.1", user_agent="pytest", request_id="req-1")
KEY = bytes(range(32))
START = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    mfa: MfaService
    store: SqliteIdentityStore
    db: SqliteDatabase
    clock: Clock
    user: User
    path: Path

    def code(self, secret: str, offset: float = 0.0) -> str:
        return pyotp.TOTP(secret).at(int(self.clock.now + offset))

    async def audit(self, action: str) -> list[dict[str, object]]:
        rows = await self.db.fetchall(
            "SELECT record FROM audit_events WHERE action = ? ORDER BY seq", (action,)
        )
        return [json.loads(row[0]) for row in rows]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    path = tmp_path / "gateway.db"
    db = await SqliteDatabase.open(path)
    store = SqliteIdentityStore(db)
    tenant = Tenant("t_1", "acme", START)
    user = User("u_1", "ann@example.com", START)
    await store.signup(tenant, user, "x", Membership("t_1", "u_1", ("admin",)), event("s"))
    clock = Clock()
    try:
        yield World(MfaService(store, KEY, clock), store, db, clock, user, path)
    finally:
        await db.close()


async def enabled(world: World) -> tuple[str, tuple[str, ...]]:
    enrolment = await world.mfa.enroll(world.user, CTX)
    await world.mfa.confirm(world.user.id, world.code(enrolment.secret), CTX)
    world.clock.now += 30  # the confirming code's step is used up
    return enrolment.secret, enrolment.recovery_codes


async def test_enrolment_is_off_until_confirmed(world: World) -> None:
    enrolment = await world.mfa.enroll(world.user, CTX)
    assert enrolment.otpauth_uri.startswith("otpauth://totp/")
    assert "ann%40example.com" in enrolment.otpauth_uri
    assert f"secret={enrolment.secret}" in enrolment.otpauth_uri
    assert len(enrolment.recovery_codes) == RECOVERY_CODES == len(set(enrolment.recovery_codes))
    assert not await world.mfa.is_enabled(world.user.id)
    with pytest.raises(MfaCodeInvalid):
        await world.mfa.verify(world.user.id, world.code(enrolment.secret), CTX)
    with pytest.raises(MfaCodeInvalid):
        await world.mfa.confirm(world.user.id, "000000", CTX)
    await world.mfa.confirm(world.user.id, world.code(enrolment.secret), CTX)
    assert await world.mfa.is_enabled(world.user.id)
    assert [e["outcome"] for e in await world.audit("mfa.enable")] == ["failure", "success"]


async def test_confirm_without_enrolment_and_enrol_twice(world: World) -> None:
    with pytest.raises(MfaNotEnrolled):
        await world.mfa.confirm(world.user.id, "123456", CTX)
    first = await world.mfa.enroll(world.user, CTX)
    second = await world.mfa.enroll(world.user, CTX)  # an unconfirmed one is replaced
    assert first.secret != second.secret
    with pytest.raises(MfaCodeInvalid):
        await world.mfa.confirm(world.user.id, world.code(first.secret), CTX)
    await world.mfa.confirm(world.user.id, world.code(second.secret), CTX)
    with pytest.raises(MfaAlreadyEnabled):
        await world.mfa.enroll(world.user, CTX)


async def test_a_totp_code_is_accepted_once(world: World) -> None:
    secret, _ = await enabled(world)
    code = world.code(secret)
    assert await world.mfa.verify(world.user.id, code, CTX) == "totp"
    with pytest.raises(MfaCodeInvalid):
        await world.mfa.verify(world.user.id, code, CTX)  # replay within the same step
    world.clock.now += 15
    with pytest.raises(MfaCodeInvalid):
        await world.mfa.verify(world.user.id, code, CTX)  # still a replay (window ±1)
    world.clock.now += 30
    assert await world.mfa.verify(world.user.id, world.code(secret), CTX) == "totp"
    outcomes = [e["outcome"] for e in await world.audit("auth.mfa")]
    assert outcomes == ["success", "failure", "failure", "success"]


async def test_a_step_up_is_audited_as_such_with_the_same_replay_protection(
    world: World,
) -> None:
    secret, codes = await enabled(world)
    code = world.code(secret)
    assert await world.mfa.verify(world.user.id, code, CTX) == "totp"  # the sign-in
    with pytest.raises(MfaCodeInvalid):
        await world.mfa.verify(world.user.id, code, CTX, step_up=True)  # the same step again
    assert await world.mfa.verify(world.user.id, codes[0], CTX, step_up=True) == "recovery"
    with pytest.raises(MfaCodeInvalid):
        await world.mfa.verify(world.user.id, codes[0], CTX, step_up=True)
    world.clock.now += 30
    assert await world.mfa.verify(world.user.id, world.code(secret), CTX, step_up=True) == "totp"
    seen = [(e["outcome"], e["details"]) for e in await world.audit("auth.mfa")]
    step_up = {"purpose": "step-up"}
    assert seen == [
        ("success", {"method": "totp"}),
        ("failure", step_up),
        ("success", {"method": "recovery", **step_up}),
        ("failure", step_up),
        ("success", {"method": "totp", **step_up}),
    ]


async def test_an_older_step_is_refused_after_a_newer_one(world: World) -> None:
    secret, _ = await enabled(world)
    ahead = world.code(secret, offset=30)  # the next step's code (clock skew window)
    assert await world.mfa.verify(world.user.id, ahead, CTX) == "totp"
    with pytest.raises(MfaCodeInvalid):
        await world.mfa.verify(world.user.id, world.code(secret), CTX)


async def test_codes_outside_the_window_are_refused(world: World) -> None:
    secret, _ = await enabled(world)
    with pytest.raises(MfaCodeInvalid):
        await world.mfa.verify(world.user.id, world.code(secret, offset=-90), CTX)
    with pytest.raises(MfaCodeInvalid):
        await world.mfa.verify(world.user.id, world.code(secret, offset=90), CTX)
    for junk in ("", "12345", "1234567", "abcdef", "x" * 100):
        with pytest.raises(MfaCodeInvalid):
            await world.mfa.verify(world.user.id, junk, CTX)


async def test_recovery_codes_work_once(world: World) -> None:
    _, codes = await enabled(world)
    assert await world.mfa.recovery_codes_left(world.user.id) == RECOVERY_CODES
    assert await world.mfa.verify(world.user.id, codes[0].upper(), CTX) == "recovery"
    with pytest.raises(MfaCodeInvalid):
        await world.mfa.verify(world.user.id, codes[0], CTX)
    assert await world.mfa.verify(world.user.id, codes[1].replace("-", ""), CTX) == "recovery"
    assert await world.mfa.recovery_codes_left(world.user.id) == RECOVERY_CODES - 2


async def test_disable_needs_a_current_code(world: World) -> None:
    secret, codes = await enabled(world)
    with pytest.raises(MfaCodeInvalid):
        await world.mfa.disable(world.user.id, "000000", CTX)
    assert await world.mfa.is_enabled(world.user.id)
    await world.mfa.disable(world.user.id, world.code(secret), CTX)
    assert not await world.mfa.is_enabled(world.user.id)
    assert await world.store.get_mfa(world.user.id) is None
    assert await world.store.count_recovery_codes(world.user.id) == 0
    with pytest.raises(MfaCodeInvalid):
        await world.mfa.verify(world.user.id, codes[2], CTX)
    assert [e["outcome"] for e in await world.audit("mfa.disable")] == ["failure", "success"]


async def test_the_secret_and_codes_are_never_stored_in_clear(world: World) -> None:
    secret, codes = await enabled(world)
    raw = b"".join(p.read_bytes() for p in world.path.parent.glob(world.path.name + "*"))
    assert secret.encode() not in raw
    for code in codes:
        assert code.encode() not in raw and code.replace("-", "").encode() not in raw
    record = await world.store.get_mfa(world.user.id)
    assert record is not None and secret not in repr(record)
    box = SecretBox(KEY)
    assert box.open(world.user.id, record.secret_ciphertext) == secret
    # Bound to the user, and to the key.
    assert box.open("u_other", record.secret_ciphertext) is None
    assert SecretBox(bytes(32)).open(world.user.id, record.secret_ciphertext) is None
    assert box.open(world.user.id, "v1:garbage") is None


def test_matching_step_and_helpers() -> None:
    secret = pyotp.random_base32()
    now = START
    step = int(now // 30)
    code = pyotp.TOTP(secret).at(int(now))
    assert matching_step(secret, code, now, after=-1) == step
    assert matching_step(secret, code, now, after=step) is None
    assert matching_step(secret, "12 34 56", now, after=-1) is None
    assert recovery_hash("u_1", "ABCD-efgh") == recovery_hash("u_1", "abcdefgh")
    assert recovery_hash("u_1", "abcdefgh") != recovery_hash("u_2", "abcdefgh")
    svg = qr_svg("otpauth://totp/x?secret=ABC")
    assert svg.startswith("<svg") and "<script" not in svg
