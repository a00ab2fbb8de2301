"""JWT tricks against the secret broker's verifier (`gateway.secrets.broker.AssertionVerifier`),
which trusts the `X-Gateway-Assertion` an upstream hands back to `POST /.gateway/secrets/resolve`.

The examples' verifiers are covered by tests/unit/test_example_verifiers.py and
tests/security/test_assertion_verification.py; this module attacks the gateway's own verifier
with the key ring of a real state directory. (The resolve route is not yet mounted by
gateway/app.py; once it is, the same forgeries can be replayed over HTTP.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.identity.signing_keys import KeyRing
from gateway.secrets.broker import AssertionVerifier
from gateway.storage.state import open_state_dir


@dataclass
class Broker:
    verifier: AssertionVerifier
    kid: str
    private: Ed25519PrivateKey

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": "gateway",
            "aud": "app",
            "sub": "u-attacker",
            "tenant": {"id": "t-victim", "slug": "victim"},
            "roles": ["admin"],
            "email": "a@example.test",
            "iat": now,
            "nbf": now,
            "exp": now + 60,
            "jti": "j",
        }
        for key, value in changes.items():
            if value is DROP:
                claims.pop(key, None)
            else:
                claims[key] = value
        return claims

    def signed(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(
            claims, self.private, algorithm="EdDSA", headers={"kid": self.kid, **header}
        )

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )


DROP = object()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Broker:
    state: Path = tmp_path_factory.mktemp("broker") / "state"
    ring = KeyRing(open_state_dir(state))
    key = ring.published()[0]
    return Broker(AssertionVerifier(ring, "gateway", ["app"]), key.kid, key.private)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    sig = hmac.new(key, head.encode(), hashlib.sha256).digest() if key is not None else b""
    return head + "." + b64(sig)


FORGERIES: dict[str, Callable[[Broker], str]] = {
    # CVE-2015-9235 class (node-jsonwebtoken) / PyJWT docs: `alg: none` with an empty
    # signature, in several spellings.
    "alg-none": lambda b: hand_made({"alg": "none", "kid": b.kid}, b.claims(), None),
    "alg-None": lambda b: hand_made({"alg": "None", "kid": b.kid}, b.claims(), None),
    "alg-NONE-no-sig": lambda b: hand_made({"alg": "NONE", "kid": b.kid}, b.claims(), None)[:-1],
    # PyJWT CVE-2022-29217 and CVE-2017-11424: HMAC keyed with the published public key
    # (raw bytes and the PEM that a JWKS-to-PEM step would produce).
    "hs256-public-raw": lambda b: hand_made(
        {"alg": "HS256", "kid": b.kid}, b.claims(), b.public_raw
    ),
    "hs256-public-pem": lambda b: hand_made(
        {"alg": "HS256", "kid": b.kid},
        b.claims(),
        b.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ),
    # `kid` tricks (Ory Oathkeeper / generic JOSE advisories): path traversal to a file whose
    # content the attacker knows, SQL-ish ids, and an empty kid with an HMAC key of "".
    "kid-path-traversal": lambda b: hand_made(
        {"alg": "HS256", "kid": "../../../../dev/null"}, b.claims(), b""
    ),
    "kid-sql": lambda b: hand_made({"alg": "HS256", "kid": "x' OR '1'='1"}, b.claims(), b"x"),
    "kid-empty": lambda b: hand_made({"alg": "HS256", "kid": ""}, b.claims(), b""),
    # Embedded or remote keys in the header (jwk / jku / x5u, CVE-2018-0114 class): an
    # attacker key must never be used even when the kid is the real one.
    "embedded-jwk": lambda b: _attacker_signed(b, with_jwk=True),
    "jku-remote-set": lambda b: _attacker_signed(b, jku="http://127.0.0.1:9/jwks.json"),
    "right-kid-attacker-key": lambda b: _attacker_signed(b),
    # Genuine signature, wrong claims: audience, issuer, lifetime.
    "wrong-aud": lambda b: b.signed(b.claims(aud="attacker-app")),
    "aud-missing": lambda b: b.signed(b.claims(aud=DROP)),
    "wrong-iss": lambda b: b.signed(b.claims(iss="https://evil.example")),
    # PyJWT CVE-2024-53861: `iss` compared as a substring ("gate" in "gateway").
    "iss-substring": lambda b: b.signed(b.claims(iss="gate")),
    "iss-list": lambda b: _raw_signed(b, b.claims(iss=["gateway"])),
    "expired": lambda b: b.signed(b.claims(exp=int(time.time()) - 600)),
    "exp-missing": lambda b: b.signed(b.claims(exp=DROP)),
    "nbf-future": lambda b: b.signed(b.claims(nbf=int(time.time()) + 600)),
    "tenant-missing": lambda b: b.signed(b.claims(tenant=DROP)),
    "tenant-not-object": lambda b: b.signed(b.claims(tenant="t-victim")),
    # Signature stripped / payload swapped under a genuine signature.
    "payload-swapped": lambda b: _swap_payload(b),
    "signature-stripped": lambda b: b.signed(b.claims()).rsplit(".", 1)[0] + ".",
    # JWS JSON serialization and garbage.
    "json-serialization": lambda b: json.dumps({"payload": b64(b"{}"), "signatures": []}),
    "garbage": lambda b: "a.b.c",
}


def _attacker_signed(b: Broker, *, with_jwk: bool = False, jku: str | None = None) -> str:
    attacker = Ed25519PrivateKey.generate()
    header: dict[str, Any] = {"kid": b.kid}
    if with_jwk:
        raw = attacker.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        header["jwk"] = {"kty": "OKP", "crv": "Ed25519", "x": b64(raw), "kid": b.kid}
    if jku:
        header["jku"] = jku
    return jwt.encode(b.claims(), attacker, algorithm="EdDSA", headers=header)


def _raw_signed(b: Broker, claims: dict[str, Any]) -> str:
    """Signed with the real key without PyJWT's claim checks (for malformed claim types)."""
    payload = json.dumps(claims).encode()
    return jwt.api_jws.encode(payload, b.private, algorithm="EdDSA", headers={"kid": b.kid})


def _swap_payload(b: Broker) -> str:
    genuine = b.signed(b.claims(roles=["viewer"]))
    head, _, sig = genuine.split(".")
    return f"{head}.{b64(json.dumps(b.claims(roles=['admin'])).encode())}.{sig}"


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_forged_assertion_is_refused_by_the_broker(broker: Broker, case: str) -> None:
    assert broker.verifier.verify(FORGERIES[case](broker)) is None


def test_genuine_assertion_is_accepted(broker: Broker) -> None:
    """Positive control: the same claims signed with the real key name the caller."""
    caller = broker.verifier.verify(broker.signed(broker.claims()))
    assert caller is not None and caller.tenant_id == "t-victim"
