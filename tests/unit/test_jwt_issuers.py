"""External JWT issuers: configuration, verification, key rotation and the principal."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from gateway.audit.events import RequestContext
from gateway.config import GatewayConfig, JwtIssuerConfig
from gateway.identity.jwks_cache import JwksCache, OutboundHttp, select_key
from gateway.identity.jwt_issuers import JwtIssuers, JwtRefused
from gateway.identity.principal import Principal
from gateway.pipeline.reasons import Deny, Reason
from gateway.web.common import AUTH_SERVICES
from gateway.web.oidc import JWT_ISSUERS
from tests.support.fake_oidc import (
    FakeOidc,
    forged_token,
    in_process_gateway,
    issuer_config,
    new_ec_key,
    new_rsa_key,
    public_jwk,
    run_fake_oidc,
)


def claims(idp: FakeOidc, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": idp.issuer,
        "aud": "gateway",
        "sub": "ci-runner",
        "iat": now,
        "exp": now + 300,
        "tenant": "acme",
        "roles": ["editor"],
    }
    return {k: v for k, v in {**base, **extra}.items() if v is not None}


@pytest.fixture
async def idp() -> AsyncIterator[FakeOidc]:
    async with run_fake_oidc() as provider:
        yield provider


@pytest.fixture
async def issuers(idp: FakeOidc) -> AsyncIterator[JwtIssuers]:
    http = OutboundHttp()
    yield JwtIssuers([JwtIssuerConfig.model_validate(issuer_config(idp))], http)
    await http.close()


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithms", [["none"], ["HS256"], ["RS256", "HS512"], []])
def test_config_refuses_none_hmac_and_empty_allow_lists(algorithms: list[str]) -> None:
    entry = {"issuer": "https://ci", "jwks_url": "https://ci/jwks", "audiences": ["gw"]}
    with pytest.raises(ValidationError, match="never none or HS"):
        GatewayConfig.model_validate(
            {"jwt_issuers": [{**entry, "tenant": "acme", "algorithms": algorithms}]}
        )
    provider = {"tenant": "acme", "issuer": "https://idp", "client_id": "c"}
    with pytest.raises(ValidationError, match="never none or HS"):
        GatewayConfig.model_validate(
            {"oidc": {"providers": [{**provider, "algorithms": algorithms}]}}
        )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"tenant": "acme", "tenant_claim": "t"}, "exactly one of tenant or tenant_claim"),
        ({}, "exactly one of tenant or tenant_claim"),
        ({"tenant": "acme", "jwks_url": "http://keys.example/jwks"}, "https://"),
        ({"tenant": "acme", "audiences": []}, "at least 1"),
    ],
)
def test_config_issuer_checks(extra: dict[str, Any], message: str) -> None:
    entry = {"issuer": "https://ci", "jwks_url": "https://ci/jwks", "audiences": ["gw"], **extra}
    with pytest.raises(ValidationError, match=message):
        GatewayConfig.model_validate({"jwt_issuers": [entry]})


def test_config_refuses_duplicate_issuers_and_providers() -> None:
    entry = {"issuer": "https://ci", "jwks_url": "https://ci/jwks", "audiences": ["gw"]}
    with pytest.raises(ValidationError, match="unique issuer"):
        GatewayConfig.model_validate({"jwt_issuers": [{**entry, "tenant": "aa"}] * 2})
    provider = {"tenant": "acme", "issuer": "https://idp", "client_id": "c"}
    with pytest.raises(ValidationError, match="one provider per tenant"):
        GatewayConfig.model_validate({"oidc": {"providers": [provider, provider]}})


def test_client_secret_is_never_shown() -> None:
    from gateway.config import config_summary

    provider = {"tenant": "acme", "issuer": "https://idp", "client_id": "c", "client_secret": "s3"}
    summary = config_summary(GatewayConfig.model_validate({"oidc": {"providers": [provider]}}))
    assert summary["oidc"]["providers"][0]["client_secret"] == "<redacted>"


# --- verification ----------------------------------------------------------------------------


async def test_valid_rs256_and_es256_tokens_are_accepted(
    idp: FakeOidc, issuers: JwtIssuers
) -> None:
    found = await issuers.verify(idp.mint(claims(idp)))
    assert found.principal_id == "jwt:127.0.0.1:ci-runner"
    assert found.tenant_slug == "acme" and found.roles == ("editor",)
    es = await issuers.verify(idp.mint(claims(idp, roles="viewer editor"), alg="ES256"))
    assert es.roles == ("editor", "viewer")


def _pem(idp: FakeOidc) -> bytes:
    public = idp.keys["rsa-1"].public_key()
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    "case",
    [
        "alg-none",
        "hs256-public-key-pem",
        "hs256-public-key-jwk",
        "wrong-audience",
        "wrong-issuer",
        "expired",
        "no-expiry",
        "unknown-kid",
        "bad-signature",
        "alg-not-allowed",
        "key-type-mismatch",
        "role-invalid",
        "no-roles",
        "no-tenant",
        "not-a-jwt",
    ],
)
async def test_refusals(idp: FakeOidc, case: str) -> None:
    http = OutboundHttp()
    config = JwtIssuerConfig.model_validate(issuer_config(idp, algorithms=["RS256", "ES256"]))
    issuers = JwtIssuers([config], http)
    try:
        with pytest.raises(JwtRefused):
            await issuers.verify(_bad_token(idp, case))
    finally:
        await http.close()


def _bad_token(idp: FakeOidc, case: str) -> str:
    rsa_header = {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}
    jwk_bytes = str(public_jwk(idp.keys["rsa-1"], "rsa-1")).encode()
    now, ec_key = int(time.time()), new_ec_key()
    table: dict[str, Any] = {
        "alg-none": lambda: forged_token({"alg": "none", "kid": "rsa-1"}, claims(idp), None),
        "hs256-public-key-pem": lambda: forged_token(rsa_header, claims(idp), _pem(idp)),
        "hs256-public-key-jwk": lambda: forged_token(rsa_header, claims(idp), jwk_bytes),
        "wrong-audience": lambda: idp.mint(claims(idp, aud="someone-else")),
        "wrong-issuer": lambda: idp.mint(claims(idp, iss="https://evil.example")),
        "expired": lambda: idp.mint(claims(idp, exp=now - 3600, iat=now - 4000)),
        "no-expiry": lambda: idp.mint(claims(idp, exp=None)),
        "unknown-kid": lambda: idp.mint(claims(idp), kid="nope", key=idp.keys["rsa-1"]),
        "bad-signature": lambda: idp.mint(claims(idp), key=new_rsa_key()),
        "alg-not-allowed": lambda: idp.mint(claims(idp), alg="RS512", kid="rsa-1"),
        "key-type-mismatch": lambda: idp.mint(claims(idp), alg="ES256", kid="rsa-1", key=ec_key),
        "role-invalid": lambda: idp.mint(claims(idp, roles=["editor", "operator"])),
        "no-roles": lambda: idp.mint(claims(idp, roles=[])),
        "no-tenant": lambda: idp.mint(claims(idp, tenant=None)),
        "not-a-jwt": lambda: "definitely not a token",
    }  # fmt: skip
    token: str = table[case]()
    return token


async def test_fixed_tenant_prefix_and_nested_roles_claim(idp: FakeOidc) -> None:
    http = OutboundHttp()
    entry = issuer_config(idp, tenant_claim=None, tenant="acme", subject_prefix="ci:")
    entry["roles_claim"] = "realm_access.roles"
    issuers = JwtIssuers([JwtIssuerConfig.model_validate(entry)], http)
    try:
        token = idp.mint(claims(idp, tenant="other", roles=None, realm_access={"roles": ["admin"]}))
        found = await issuers.verify(token)
    finally:
        await http.close()
    assert (found.principal_id, found.tenant_slug, found.roles) == (
        "ci:ci-runner",
        "acme",
        ("admin",),
    )


# --- keys ------------------------------------------------------------------------------------


async def test_rotation_is_picked_up_on_an_unknown_kid(idp: FakeOidc, issuers: JwtIssuers) -> None:
    await issuers.verify(idp.mint(claims(idp)))
    cache = issuers.cache(idp.issuer)
    cache._attempted_at = time.monotonic() - 60  # the last fetch is old enough to refetch
    idp.rotate("rsa-2")
    found = await issuers.verify(idp.mint(claims(idp), kid="rsa-2", alg="RS256"))
    assert found.roles == ("editor",) and cache.fetches == 2


async def test_unknown_kids_refetch_at_most_once_per_interval(idp: FakeOidc) -> None:
    now = [1000.0]
    http = OutboundHttp()
    cache = JwksCache(idp.jwks_url, http, clock=lambda: now[0], min_refetch_interval=30)
    try:
        assert await cache.key("rsa-1", "RS256") is not None
        for _ in range(20):
            assert await cache.key("made-up", "RS256") is None
        assert idp.jwks_requests == 1
        now[0] += 31
        assert await cache.key("made-up", "RS256") is None
        assert idp.jwks_requests == 2
        now[0] += 301  # past the refresh interval: refetched even for a known kid
        assert await cache.key("rsa-1", "RS256") is not None and idp.jwks_requests == 3
    finally:
        await http.close()


async def test_an_unreachable_jwks_fails_closed(idp: FakeOidc) -> None:
    http = OutboundHttp()
    cache = JwksCache(f"{idp.issuer}/missing", http)
    try:
        assert await cache.key("rsa-1", "RS256") is None
    finally:
        await http.close()


def test_select_key_never_yields_an_hmac_or_mismatched_key(idp: FakeOidc) -> None:
    rsa = public_jwk(idp.keys["rsa-1"], "rsa-1")
    oct_key = {"kty": "oct", "kid": "k", "k": "c2VjcmV0"}
    assert select_key([rsa], "rsa-1", "HS256") is None
    assert select_key([oct_key], "k", "HS256") is None
    assert select_key([rsa], "rsa-1", "ES256") is None
    assert select_key([{**rsa, "alg": "RS512"}], "rsa-1", "RS256") is None
    assert select_key([{**rsa, "use": "enc"}], "rsa-1", "RS256") is None
    assert select_key([rsa], None, "RS256") is not None
    assert select_key([rsa, rsa], None, "RS256") is None


# --- the principal, through the authenticator -------------------------------------------------


async def test_authenticator_maps_tokens_to_machine_principals(
    tmp_path: Path, idp: FakeOidc
) -> None:
    async with in_process_gateway(tmp_path, jwt_issuers=[issuer_config(idp)]) as gw:
        services = gw.app[AUTH_SERVICES]
        await services.identity.signup(
            "a@acme.test", "plum-tractor-nebula-42", "acme", RequestContext()
        )
        await services.identity.signup(
            "b@other.test", "plum-tractor-nebula-42", "other", RequestContext()
        )
        authn = dataclasses.replace(services.authenticator, jwt_issuers=gw.app[JWT_ISSUERS])

        async def call(token: str, tenant: str | None = None) -> Principal | Deny | None:
            request = make_mocked_request("GET", "/", headers={"Authorization": f"Bearer {token}"})
            return await authn.authenticate(request, tenant)

        found = await call(idp.mint(claims(idp)))
        assert isinstance(found, Principal)
        assert (found.kind, found.id, found.auth_method) == (
            "service_account",
            "jwt:127.0.0.1:ci-runner",
            "jwt",
        )
        assert found.tenant.slug == "acme" and found.roles == ("editor",) and found.email is None
        assert await call(idp.mint(claims(idp)), "other") == Deny(Reason.NOT_A_MEMBER)
        unknown = await call(idp.mint(claims(idp, tenant="ghost")))
        assert isinstance(unknown, Deny) and unknown.reason is Reason.UNAUTHENTICATED
        bad = await call(idp.mint(claims(idp, aud="x")))
        assert isinstance(bad, Deny) and bad.reason is Reason.UNAUTHENTICATED
        without = dataclasses.replace(authn, jwt_issuers=None)
        request = make_mocked_request("GET", "/", headers={"Authorization": "Bearer x.y.z"})
        assert await without.authenticate(request, None) is None  # unchanged without issuers
