"""Webhook signatures: valid, invalid, stale, malformed, and replayed (through the store)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.audit.events import Actor, RequestContext
from gateway.config.routes import WebhookVerification
from gateway.identity.models import Tenant
from gateway.secrets.kek import KekRegistry
from gateway.secrets.providers import LocalKeyProvider
from gateway.secrets.service import SecretService
from gateway.secrets.values import SecretValue
from gateway.secrets.webhooks import (
    WebhookRequest,
    WebhookVerifier,
    check,
    header_value,
    parse_header,
)
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.secrets import SqliteSecretStore

SECRET = SecretValue("whsec-canary-2c81")
BODY = b'{"event": "paid"}'
NOW = 1_700_000_000


def test_check_outcomes() -> None:
    good = header_value(SECRET, NOW, BODY)
    assert check(SECRET, good, BODY, NOW + 10, 300)[0] == "ok"
    assert check(SECRET, good, BODY + b" ", NOW, 300)[0] == "mismatch"
    assert check(SecretValue("other"), good, BODY, NOW, 300)[0] == "mismatch"
    assert check(SECRET, good, BODY, NOW + 301, 300)[0] == "stale"
    assert check(SECRET, good, BODY, NOW - 301, 300)[0] == "stale"  # from the future
    assert check(SECRET, None, BODY, NOW, 300)[0] == "missing"
    assert check(SECRET, "v1=abc", BODY, NOW, 300)[0] == "malformed"
    assert check(SECRET, f"t={NOW},v1=zz", BODY, NOW, 300)[0] == "malformed"
    assert check(SECRET, f"t={NOW},t={NOW},v1=00", BODY, NOW, 300)[0] == "malformed"
    assert check(SECRET, "x" * 2000, BODY, NOW, 300)[0] == "malformed"
    # A rotating sender may send several signatures; one valid one suffices.
    both = f"t={NOW},v1={'0' * 64},{good.split(',')[1]}"
    assert check(SECRET, both, BODY, NOW, 300)[0] == "ok"
    assert parse_header(good.upper().replace("T=", "t=").replace("V1=", "v1=")) is not None


@pytest.fixture
async def verifier(tmp_path: Path) -> AsyncIterator[tuple[WebhookVerifier, SqliteDatabase]]:
    db = await SqliteDatabase.open(tmp_path / "gateway.db")
    store = SqliteSecretStore(db)
    service = SecretService(store, KekRegistry(store, LocalKeyProvider(os.urandom(32))))
    await service.put("t_a", "acme", "hook", SECRET, Actor("user", "u"), RequestContext())
    tenants = {"acme": Tenant("t_a", "acme", 0.0), "t_b": Tenant("t_b", "beta", 0.0)}

    async def find(ref: str) -> Tenant | None:
        return tenants.get(ref)

    yield WebhookVerifier(service, find, clock=lambda: float(NOW)), db
    await db.close()


def request(header: str | None, tenant: str | None = "acme", body: bytes = BODY) -> WebhookRequest:
    return WebhookRequest("hooks", tenant, header, body, RequestContext(ip="192.0.2.1"))


async def test_verifier_accepts_once_then_refuses_the_replay(
    verifier: tuple[WebhookVerifier, SqliteDatabase],
) -> None:
    check_, db = verifier
    spec = WebhookVerification(secret="hook")
    good = header_value(SECRET, NOW - 5, BODY)
    assert await check_.verify(spec, request(good)) == "ok"
    assert await check_.verify(spec, request(good)) == "replayed"
    assert await check_.verify(spec, request(header_value(SECRET, NOW - 4, BODY))) == "ok"
    assert await check_.verify(spec, request("t=1,v1=00")) == "stale"
    assert await check_.verify(spec, request(good, tenant=None)) == "no-tenant"
    assert await check_.verify(spec, request(good, tenant="t_b")) == "no-secret"
    pinned = WebhookVerification(secret="hook", tenant="acme")
    assert (
        await check_.verify(pinned, request(header_value(SECRET, NOW - 3, BODY), tenant=None))
        == "ok"
    )
    rows = await db.fetchall(
        "SELECT outcome, record FROM audit_events WHERE action = 'webhook.verify' ORDER BY seq"
    )
    assert [r[0] for r in rows] == [
        "success",
        "failure",
        "success",
        "failure",
        "failure",
        "success",
    ]
    text = json.dumps([json.loads(r[1]) for r in rows])
    assert SECRET.reveal() not in text and good.split("v1=")[1] not in text
