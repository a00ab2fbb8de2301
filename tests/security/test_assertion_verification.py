"""An upstream verifying `X-Gateway-Assertion` the documented way refuses every forgery.

The verifier is what an app would write with pyjwt: pick the key by `kid` from the gateway's
JWKS, then `jwt.decode(..., algorithms=["EdDSA"], audience=..., issuer=...)`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.identity.assertion import AssertionSigner
from gateway.identity.signing_keys import KeyRing
from gateway.storage.state import open_state_dir
from gateway.web.jwks import jwks_document
from tests.unit.test_assertion import session_principal

ISSUER = "gateway"


def verify(token: str, jwks: dict[str, Any], audience: str = "app") -> dict[str, Any]:
    """The upstream's verifier; raises on anything it must not trust."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    return jwt.decode(token, key.key, algorithms=["EdDSA"], audience=audience, issuer=ISSUER)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A compact JWS built by hand (for algorithms pyjwt would refuse to produce)."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + (b64(sign(head.encode())) if sign else "")


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing(open_state_dir(tmp_path / "s"))


@pytest.fixture
def jwks(ring: KeyRing) -> dict[str, Any]:
    return jwks_document(ring)


@pytest.fixture
def genuine(ring: KeyRing) -> str:
    return AssertionSigner(ring, ISSUER).assertion_for(session_principal(), "app")


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def test_the_genuine_assertion_verifies(genuine: str, jwks: dict[str, Any]) -> None:
    assert verify(genuine, jwks)["sub"] == "u-1"


def test_alg_none_is_refused(genuine: str, ring: KeyRing, jwks: dict[str, Any]) -> None:
    token = hand_made({"alg": "none", "kid": ring.signer().kid}, claims_of(genuine))
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(token, jwks)


@pytest.mark.parametrize("form", ["raw", "pem", "x"])
def test_hs256_keyed_with_the_public_key_is_refused(
    genuine: str, ring: KeyRing, jwks: dict[str, Any], form: str
) -> None:
    public = ring.signer().private.public_key()
    secret = {
        "raw": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "x": jwks["keys"][0]["x"].encode(),
    }[form]
    token = hand_made(
        {"alg": "HS256", "kid": ring.signer().kid, "typ": "JWT"},
        claims_of(genuine),
        lambda msg: hmac.new(secret, msg, hashlib.sha256).digest(),
    )
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(token, jwks)


def test_an_assertion_for_another_upstream_is_refused(ring: KeyRing, jwks: dict[str, Any]) -> None:
    token = AssertionSigner(ring, ISSUER).assertion_for(session_principal(), "billing")
    with pytest.raises(jwt.InvalidAudienceError):
        verify(token, jwks, audience="app")


def test_an_expired_assertion_is_refused(ring: KeyRing, jwks: dict[str, Any]) -> None:
    past = AssertionSigner(ring, ISSUER, clock=lambda: time.time() - 61)
    token = past.assertion_for(session_principal(), "app")
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(token, jwks)


def test_an_unknown_kid_is_refused(genuine: str, jwks: dict[str, Any]) -> None:
    other = Ed25519PrivateKey.generate()
    token = jwt.encode(claims_of(genuine), other, algorithm="EdDSA", headers={"kid": "unknown"})
    with pytest.raises(KeyError):
        verify(token, jwks)


def test_another_key_claiming_the_right_kid_is_refused(
    genuine: str, ring: KeyRing, jwks: dict[str, Any]
) -> None:
    other = Ed25519PrivateKey.generate()
    kid = ring.signer().kid
    token = jwt.encode(claims_of(genuine), other, algorithm="EdDSA", headers={"kid": kid})
    with pytest.raises(jwt.InvalidSignatureError):
        verify(token, jwks)


def test_a_tampered_claim_is_refused(genuine: str, jwks: dict[str, Any]) -> None:
    head, payload, sig = genuine.split(".")
    claims = claims_of(genuine) | {"roles": ["admin"]}
    token = ".".join([head, b64(json.dumps(claims).encode()), sig])
    assert payload != token.split(".")[1]
    with pytest.raises(jwt.InvalidSignatureError):
        verify(token, jwks)
