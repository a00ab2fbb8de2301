"""The broker: assertion verification (signature, expiry, audience, issuer) and resolving
only the caller's own tenant's secrets when Casbin allows, auditing every call."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.events import Actor, RequestContext
from gateway.identity.assertion import AssertionSigner
from gateway.identity.models import Tenant
from gateway.identity.principal import Principal
from gateway.identity.signing_keys import KeyRing
from gateway.policy.defaults import packaged
from gateway.policy.engine import PolicyEngine
from gateway.policy.rules import Rule
from gateway.secrets.broker import AssertionVerifier, Broker, Caller
from gateway.secrets.kek import KekRegistry
from gateway.secrets.providers import LocalKeyProvider
from gateway.secrets.service import SecretError, SecretService
from gateway.secrets.values import SecretValue
from gateway.storage.sqlite.database import SqliteDatabase
from gateway.storage.sqlite.secrets import SqliteSecretStore
from gateway.storage.state import open_state_dir

ISSUER = "https://gw.example.test"
ACME = Tenant("t_acme", "acme", 0.0)
BETA = Tenant("t_beta", "beta", 0.0)
CTX = RequestContext(request_id="r-1")


def principal(tenant: Tenant = ACME, roles: tuple[str, ...] = ("backend",)) -> Principal:
    return Principal("service_account", "sa_1", None, tenant, roles, "api_key", key_id="k_1")


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing(open_state_dir(tmp_path / "state"))


@pytest.fixture
def verifier(ring: KeyRing) -> AssertionVerifier:
    return AssertionVerifier(ring, ISSUER, ["app", "forward-auth"], leeway=0)


def test_a_fresh_assertion_names_its_caller(ring: KeyRing, verifier: AssertionVerifier) -> None:
    token = AssertionSigner(ring, ISSUER).assertion_for(principal(), "app")
    caller = verifier.verify(token)
    assert caller == Caller(
        "sa_1", "t_acme", "acme", ("backend",), Actor("service_account", "sa_1"), "assertion"
    )
    assert verifier.verify(AssertionSigner(ring, ISSUER).assertion_for(principal(), "forward-auth"))


def _forge(ring: KeyRing, key: Any, **changes: Any) -> str:
    signer = AssertionSigner(ring, ISSUER)
    claims = signer.claims(principal(), "app", int(time.time()))
    claims.update(changes)
    kid = ring.signer().kid
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid, "typ": "JWT"})


def test_refused_assertions(ring: KeyRing, verifier: AssertionVerifier) -> None:
    own = ring.signer().private
    now = int(time.time())
    refused = [
        _forge(ring, own, exp=now - 1, iat=now - 61, nbf=now - 61),  # expired
        _forge(ring, Ed25519PrivateKey.generate()),  # forged: another key, our kid
        _forge(ring, own, aud="elsewhere"),  # audience not an upstream
        _forge(ring, own, iss="https://evil.example"),  # another issuer
        _forge(ring, own, nbf=now + 120),  # not yet valid
        _forge(ring, own, tenant="t_acme"),  # not the assertion's shape
        jwt.encode(
            {"sub": "sa_1", "aud": "app", "iss": ISSUER},
            own,
            algorithm="EdDSA",
            headers={"kid": ring.signer().kid},
        ),
        jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256", headers={"kid": ring.signer().kid}),
        jwt.encode(_claims_dict(ring), None, algorithm="none", headers={"kid": ring.signer().kid}),
        "not-a-jwt",
        "",
    ]
    assert [verifier.verify(token) for token in refused] == [None] * len(refused)
    assert verifier.verify(_forge(ring, own)) is not None  # the control


def _claims_dict(ring: KeyRing) -> dict[str, Any]:
    return AssertionSigner(ring, ISSUER).claims(principal(), "app", int(time.time()))


@dataclass
class World:
    broker: Broker
    service: SecretService
    engine: PolicyEngine
    db: SqliteDatabase

    async def audit(self) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT record FROM audit_events WHERE action = 'secret.resolve' ORDER BY seq"
        )
        return [json.loads(r[0]) for r in rows]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    db = await SqliteDatabase.open(tmp_path / "gateway.db")
    store = SqliteSecretStore(db)
    service = SecretService(store, KekRegistry(store, LocalKeyProvider(os.urandom(32))))
    engine = PolicyEngine.from_files(
        packaged("model.conf"), packaged("policy.csv"), freeze_gc=False
    )
    engine.set_tenant_rules("t_acme", [Rule("backend", "t_acme", "secret:db-*", "read")])
    engine.set_tenant_rules("t_beta", [Rule("backend", "t_beta", "secret:*", "read")])
    actor = Actor("user", "u_admin")
    await service.put("t_acme", "acme", "db-password", SecretValue("acme-db"), actor, CTX)
    await service.put("t_acme", "acme", "db-password", SecretValue("acme-db-2"), actor, CTX)
    await service.put("t_acme", "acme", "stripe", SecretValue("acme-stripe"), actor, CTX)
    await service.put("t_beta", "beta", "db-password", SecretValue("beta-db"), actor, CTX)
    yield World(Broker(service, engine), service, engine, db)
    await db.close()


def caller(tenant: Tenant = ACME, roles: tuple[str, ...] = ("backend",)) -> Caller:
    return Caller(
        "sa_1", tenant.id, tenant.slug, roles, Actor("service_account", "sa_1"), "api_key"
    )


async def test_resolve_latest_and_pinned_versions(world: World) -> None:
    assert await world.broker.resolve(caller(), "secret://acme/db-password", CTX) == (
        SecretValue("acme-db-2"),
        2,
    )
    assert await world.broker.resolve(caller(), "secret://t_acme/db-password#1", CTX) == (
        SecretValue("acme-db"),
        1,
    )
    records = await world.audit()
    assert [r["outcome"] for r in records] == ["success", "success"]
    assert records[0]["details"] == {
        "via": "api_key",
        "ref": "secret://acme/db-password",
        "version": 2,
    }
    assert "acme-db" not in json.dumps(records).replace("acme-db-", "").replace('"acme/db', "")


@pytest.mark.parametrize(
    ("ref", "who", "status", "code"),
    [
        ("secret://beta/db-password", caller(), 404, "not-found"),  # another tenant's secret
        ("secret://t_beta/db-password", caller(), 404, "not-found"),
        ("secret://acme/stripe", caller(), 403, "policy-deny"),  # no rule for it
        ("secret://acme/db-password", caller(roles=("viewer",)), 403, "policy-deny"),
        ("secret://acme/db-missing", caller(), 404, "not-found"),
        ("secret://acme/db-password#9", caller(), 404, "not-found"),
        ("vault://secret/acme#db", caller(), 400, "bad-reference"),
        ("env://HOME", caller(), 400, "bad-reference"),
        (None, caller(), 400, "bad-reference"),
    ],
)
async def test_refusals_are_audited(
    world: World, ref: object, who: Caller, status: int, code: str
) -> None:
    with pytest.raises(SecretError) as info:
        await world.broker.resolve(who, ref, CTX)
    assert (info.value.status, info.value.code) == (status, code)
    records = await world.audit()
    assert records[-1]["outcome"] == "failure"
    assert records[-1]["tenant_id"] == who.tenant_id
    assert records[-1]["details"]["reason"] == code
    assert "beta-db" not in json.dumps(records)


async def test_beta_cannot_reach_acme_but_reads_its_own(world: World) -> None:
    beta = caller(BETA)
    assert (await world.broker.resolve(beta, "secret://beta/db-password", CTX))[0] == SecretValue(
        "beta-db"
    )
    with pytest.raises(SecretError):
        await world.broker.resolve(beta, "secret://acme/db-password", CTX)
