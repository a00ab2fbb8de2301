"""The signed assertion: exact claims and header, and when a cached one is reused."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jwt
import pytest

from gateway.identity.assertion import AssertionSigner, issuer_for
from gateway.identity.models import Tenant
from gateway.identity.principal import Principal
from gateway.identity.signing_keys import KeyRing, read_meta, rotate
from gateway.sessions.models import SessionRecord
from gateway.storage.state import open_state_dir
from tests.unit.test_signing_keys import Clock

TENANT = Tenant(id="t-1", slug="acme", created_at=0.0, features=("beta",))


def session_principal(roles: tuple[str, ...] = ("viewer", "editor")) -> Principal:
    session = SessionRecord(
        id="s-public",
        token_hash="h",
        user_id="u-1",
        tenant_id=TENANT.id,
        created_at=0.0,
        last_seen_at=0.0,
        expires_at=1e12,
        idle_timeout=3600,
    )
    return Principal(
        kind="user",
        id="u-1",
        email="ann@example.test",
        tenant=TENANT,
        roles=roles,
        auth_method="session",
        session=session,
    )


def key_principal() -> Principal:
    return Principal(
        kind="service_account",
        id="sa-1",
        email=None,
        tenant=TENANT,
        roles=("viewer",),
        auth_method="api_key",
        key_id="k-9",
    )


@pytest.fixture
def clock(tmp_path: Path) -> Clock:
    return Clock(read_meta(open_state_dir(tmp_path / "s"))[0].activates_at + 100)


@pytest.fixture
def ring(tmp_path: Path, clock: Clock) -> KeyRing:
    return KeyRing(open_state_dir(tmp_path / "s"), clock)


@pytest.fixture
def signer(ring: KeyRing, clock: Clock) -> AssertionSigner:
    return AssertionSigner(ring, "https://gw.example.test", clock)


def decode(ring: KeyRing, token: str, audience: str = "app") -> dict[str, Any]:
    """Verifies signature, `aud` and `iss`; times are checked against the fake clock instead."""
    public = ring.signer().private.public_key()
    issuer = "https://gw.example.test"
    unchecked = {"verify_exp": False, "verify_iat": False, "verify_nbf": False}
    return jwt.decode(
        token, public, algorithms=["EdDSA"], audience=audience, issuer=issuer, options=unchecked
    )


def test_claims_and_header_are_exact(signer: AssertionSigner, ring: KeyRing, clock: Clock) -> None:
    token = signer.assertion_for(session_principal(), "app")
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "kid": ring.signer().kid, "typ": "JWT"}
    claims = decode(ring, token)
    jti = claims.pop("jti")
    assert isinstance(jti, str) and len(jti) >= 20
    iat = int(clock.now)
    assert claims == {
        "iss": "https://gw.example.test",
        "aud": "app",
        "sub": "u-1",
        "tenant": {"id": "t-1", "slug": "acme"},
        "roles": ["editor", "viewer"],
        "email": "ann@example.test",
        "sid": "s-public",
        "auth_method": "session",
        "iat": iat,
        "nbf": iat,
        "exp": iat + 60,
    }


def test_api_key_callers_get_null_email_and_the_key_id_as_sid(
    signer: AssertionSigner, ring: KeyRing
) -> None:
    token = signer.assertion_for(key_principal(), "app")
    claims = decode(ring, token)
    assert (claims["email"], claims["sid"], claims["auth_method"]) == (None, "k-9", "api_key")


def test_issuer_is_the_public_url_or_gateway() -> None:
    assert issuer_for("https://gw.example.test") == "https://gw.example.test"
    assert issuer_for(None) == "gateway"


def test_cache_reuses_an_assertion_for_a_few_seconds(signer: AssertionSigner, clock: Clock) -> None:
    first = signer.assertion_for(session_principal(), "app")
    clock.now += 4.9
    assert signer.assertion_for(session_principal(), "app") == first
    clock.now += 0.1
    assert signer.assertion_for(session_principal(), "app") != first


@pytest.mark.parametrize(
    "change",
    [
        {"roles": ("viewer",)},
        {"tenant": dataclasses.replace(TENANT, id="t-2")},
        {"email": "new@example.test"},
        {"id": "u-2"},
        {"session": None},
    ],
)
def test_cache_misses_when_any_claim_input_changes(
    signer: AssertionSigner, change: dict[str, Any]
) -> None:
    first = signer.assertion_for(session_principal(), "app")
    assert signer.assertion_for(dataclasses.replace(session_principal(), **change), "app") != first
    assert signer.assertion_for(session_principal(), "other") != first


def test_cache_misses_when_a_new_key_starts_signing(
    signer: AssertionSigner, ring: KeyRing, clock: Clock
) -> None:
    first = signer.assertion_for(session_principal(), "app")
    *_, new = rotate(ring.state, clock.now, 1)
    clock.now += 1
    token = signer.assertion_for(session_principal(), "app")
    assert token != first
    assert jwt.get_unverified_header(token)["kid"] == new.kid


def test_a_cached_assertion_always_has_more_than_30_seconds_left(
    ring: KeyRing, clock: Clock
) -> None:
    signer = AssertionSigner(ring, "https://gw.example.test", clock, cache_ttl=3600)
    first = signer.assertion_for(session_principal(), "app")
    clock.now += 29
    assert signer.assertion_for(session_principal(), "app") == first
    clock.now += 1
    again = signer.assertion_for(session_principal(), "app")
    assert again != first
    assert decode(ring, again)["exp"] - clock.now >= 59


def test_cache_is_bounded(ring: KeyRing, clock: Clock) -> None:
    signer = AssertionSigner(ring, "gateway", clock, max_entries=2)
    for user in ("a", "b", "c"):
        signer.assertion_for(dataclasses.replace(session_principal(), id=user), "app")
    assert len(signer._cache) == 2
