"""The example apps' assertion verifiers (examples/python, examples/node) on tokens signed here.

Both verifiers get the same tokens: a valid one, and every way an attacker or a
misconfiguration could hand an app a token it must refuse. The Node verifier runs through
`node server.js --verify TOKEN --jwks FILE`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

ROOT = Path(__file__).resolve().parents[2]
PY_APP = ROOT / "examples" / "python" / "app.py"
NODE_APP = ROOT / "examples" / "node" / "server.js"
NODE = shutil.which("node")
AUDIENCE = "app"
KID = "k1"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gateway_example_python_app", PY_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = load_example()

SIGNING_KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
PUBLIC_JWK = {
    **json.loads(OKPAlgorithm.to_jwk(SIGNING_KEY.public_key())),
    "kid": KID,
    "alg": "EdDSA",
    "use": "sig",
}
JWKS = {"keys": [PUBLIC_JWK]}
PUBLIC_PEM = SIGNING_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
PUBLIC_RAW = SIGNING_KEY.public_key().public_bytes(
    serialization.Encoding.Raw, serialization.PublicFormat.Raw
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_DROP = object()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": "gateway",
        "aud": AUDIENCE,
        "sub": "usr_123",
        "tenant": {"id": "ten_1", "slug": "acme"},
        "roles": ["admin", "viewer"],
        "email": "a@acme.test",
        "sid": "ses_1",
        "auth_method": "session",
        "iat": now,
        "nbf": now,
        "exp": now + 50,
        "jti": uuid.uuid4().hex,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _DROP}


def signed(payload: dict[str, Any], key: Ed25519PrivateKey = SIGNING_KEY, kid: str = KID) -> str:
    return jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": kid})


def unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    """A compact JWT with the given header and no signature (the `alg: none` shape)."""
    h = b64url(json.dumps(header).encode())
    p = b64url(json.dumps(payload).encode())
    return f"{h}.{p}."


def hs256_with(secret: bytes) -> str:
    """The key-confusion attack: HMAC-SHA256 keyed with the published public key."""
    h = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    p = b64url(json.dumps(claims()).encode())
    mac = hmac.new(secret, f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64url(mac)}"


def tampered() -> str:
    """A valid token whose payload was swapped for one granting more, signature kept."""
    h, _, s = signed(claims()).split(".")
    p = b64url(json.dumps(claims(roles=["owner"])).encode())
    return f"{h}.{p}.{s}"


REFUSED: dict[str, tuple[Callable[[], str], str]] = {
    "alg-none": (lambda: unsigned({"alg": "none", "kid": KID}, claims()), "assertion-algorithm"),
    "alg-none-uppercase": (
        lambda: unsigned({"alg": "None", "kid": KID}, claims()),
        "assertion-algorithm",
    ),
    "hs256-public-pem": (lambda: hs256_with(PUBLIC_PEM), "assertion-algorithm"),
    "hs256-public-raw": (lambda: hs256_with(PUBLIC_RAW), "assertion-algorithm"),
    "wrong-aud": (lambda: signed(claims(aud="other-app")), "assertion-invalid"),
    "wrong-iss": (lambda: signed(claims(iss="https://evil.example")), "assertion-invalid"),
    "expired": (
        lambda: signed(claims(iat=int(time.time()) - 90, exp=int(time.time()) - 30)),
        "assertion-expired",
    ),
    "nbf-future": (
        lambda: signed(claims(nbf=int(time.time()) + 30, exp=int(time.time()) + 60)),
        "assertion-invalid",
    ),
    "iat-future": (
        lambda: signed(claims(iat=int(time.time()) + 30, exp=int(time.time()) + 60)),
        "assertion-invalid",
    ),
    "lifetime-too-long": (
        lambda: signed(claims(exp=int(time.time()) + 3600)),
        "assertion-invalid",
    ),
    "missing-exp": (lambda: signed(claims(exp=_DROP)), "assertion-invalid"),
    "missing-nbf": (lambda: signed(claims(nbf=_DROP)), "assertion-invalid"),
    "missing-tenant": (lambda: signed(claims(tenant=_DROP)), "assertion-invalid"),
    "unknown-kid": (lambda: signed(claims(), kid="k-unknown"), "assertion-kid"),
    "no-kid": (lambda: jwt.encode(claims(), SIGNING_KEY, algorithm="EdDSA"), "assertion-kid"),
    "right-kid-other-key": (lambda: signed(claims(), key=OTHER_KEY), "assertion-invalid"),
    "tampered-payload": (tampered, "assertion-invalid"),
    "missing": (lambda: "", "assertion-missing"),
    "garbage": (lambda: "garbage", "assertion-malformed"),
    "garbage-three-parts": (lambda: "not.a.jwt", "assertion-malformed"),
}


def key_for(kid: str) -> Any:
    return example.keys_from_jwks(JWKS).get(kid)


def py_verify(token: str | None) -> dict[str, Any]:
    result: dict[str, Any] = example.verify_assertion(token, key_for, audience=AUDIENCE)
    return result


# ------------------------------------------------------------------------------------ Python


def test_python_accepts_a_valid_assertion() -> None:
    payload = claims()
    got = py_verify(signed(payload))
    assert got == payload


def test_python_refuses_a_missing_header() -> None:
    with pytest.raises(example.InvalidAssertion) as err:
        py_verify(None)
    assert err.value.code == "assertion-missing"


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_python_refuses(case: str) -> None:
    make, code = REFUSED[case]
    with pytest.raises(example.InvalidAssertion) as err:
        py_verify(make())
    assert err.value.code == code, err.value.message


def test_python_accepts_small_clock_skew() -> None:
    now = int(time.time())
    assert py_verify(signed(claims(iat=now + 2, nbf=now + 2, exp=now + 50)))["sub"] == "usr_123"


def test_python_issuer_is_configurable() -> None:
    token = signed(claims(iss="https://gw.example"))
    got = example.verify_assertion(token, key_for, audience=AUDIENCE, issuer="https://gw.example")
    assert got["iss"] == "https://gw.example"


def test_keys_from_jwks_keeps_only_ed25519_signing_keys() -> None:
    ec = {"kty": "EC", "crv": "P-256", "kid": "ec", "x": PUBLIC_JWK["x"], "y": PUBLIC_JWK["x"]}
    enc = {**PUBLIC_JWK, "kid": "enc", "use": "enc"}
    hs = {**PUBLIC_JWK, "kid": "hs", "alg": "HS256"}
    broken = {**PUBLIC_JWK, "kid": "broken", "x": "!!"}
    keys = example.keys_from_jwks({"keys": [ec, enc, hs, broken, PUBLIC_JWK, "junk"]})
    assert list(keys) == [KID]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_jwks_cache_rate_limits_refetches_on_unknown_kids() -> None:
    clock = FakeClock()
    fetched: list[str] = []

    def fetch(url: str) -> tuple[dict[str, Any], int | None]:
        fetched.append(url)
        return JWKS, 60

    cache = example.JwksCache("http://gw/jwks", min_refetch=30, fetch=fetch, clock=clock)
    assert cache.key_for(KID) is not None
    for i in range(1000):
        assert cache.key_for(f"forged-{i}") is None
    assert len(fetched) == 1  # a flood of unknown kids cost the gateway nothing more
    clock.now += 30
    assert cache.key_for("forged-again") is None
    assert len(fetched) == 2  # one refetch per interval
    assert cache.key_for(KID) is not None
    assert len(fetched) == 2


def test_jwks_cache_picks_up_a_rotated_key_and_drops_a_retired_one() -> None:
    clock = FakeClock()
    new_key = Ed25519PrivateKey.generate()
    new_jwk = {**json.loads(OKPAlgorithm.to_jwk(new_key.public_key())), "kid": "k2"}
    documents = [JWKS, {"keys": [PUBLIC_JWK, new_jwk]}, {"keys": [new_jwk]}]

    def fetch(url: str) -> tuple[dict[str, Any], int | None]:
        return documents.pop(0), 60

    cache = example.JwksCache("http://gw/jwks", min_refetch=10, fetch=fetch, clock=clock)
    assert cache.key_for(KID) is not None
    clock.now += 10
    assert cache.key_for("k2") is not None  # unknown kid, refetch allowed: the new key
    clock.now += 60
    assert cache.key_for(KID) is None  # stale after max-age: refreshed, k1 retired
    assert cache.key_for("k2") is not None


def test_jwks_cache_keeps_keys_when_a_refresh_fails() -> None:
    clock = FakeClock()
    responses: list[Any] = [(JWKS, 60), example.JwksUnavailable("down")]

    def fetch(url: str) -> tuple[dict[str, Any], int | None]:
        item = responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item  # type: ignore[no-any-return]

    cache = example.JwksCache("http://gw/jwks", fetch=fetch, clock=clock)
    assert cache.key_for(KID) is not None
    clock.now += 120
    assert cache.key_for(KID) is not None


def test_jwks_cache_raises_when_nothing_was_ever_fetched() -> None:
    def fetch(url: str) -> tuple[dict[str, Any], int | None]:
        raise example.JwksUnavailable("down")

    cache = example.JwksCache("http://gw/jwks", fetch=fetch, clock=FakeClock())
    with pytest.raises(example.JwksUnavailable):
        cache.key_for(KID)


def test_fetch_json_refuses_other_schemes() -> None:
    with pytest.raises(example.JwksUnavailable):
        example.fetch_json("file:///etc/passwd")


# -------------------------------------------------------------------------------------- Node

needs_node = pytest.mark.skipif(NODE is None, reason="`node` is not installed (Node.js 20+)")


@pytest.fixture(scope="module")
def jwks_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps(JWKS))
    return path


def node_verify(token: str, jwks_file: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    assert NODE is not None
    args = ["--verify", token, "--jwks", str(jwks_file), "--aud", AUDIENCE, *extra]
    proc = subprocess.run(
        [NODE, str(NODE_APP), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.stderr == "", proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@needs_node
def test_node_accepts_a_valid_assertion(jwks_file: Path) -> None:
    payload = claims()
    code, out = node_verify(signed(payload), jwks_file)
    assert code == 0, out
    assert out == {"claims": payload}


@needs_node
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_node_refuses(case: str, jwks_file: Path) -> None:
    make, expected = REFUSED[case]
    code, out = node_verify(make(), jwks_file)
    assert code == 1, out
    assert out["error"]["code"] == expected, out


@needs_node
def test_node_issuer_is_configurable(jwks_file: Path) -> None:
    token = signed(claims(iss="https://gw.example"))
    code, out = node_verify(token, jwks_file, "--iss", "https://gw.example")
    assert code == 0, out
    code, out = node_verify(token, jwks_file)
    assert code == 1, out


NODE_CACHE_SCRIPT = """
const { JwksCache } = require(process.argv[1]);
const jwks = JSON.parse(process.argv[2]);
let now = 1000, fetches = 0;
const cache = new JwksCache("http://gw/jwks", {
  minRefetch: 30,
  clock: () => now,
  fetcher: async () => { fetches += 1; return { document: jwks, maxAge: 60 }; },
});
(async () => {
  const out = {};
  out.known = (await cache.keyFor("k1")) !== null;
  const forged = await Promise.all(Array.from({ length: 500 }, (_, i) => cache.keyFor("f" + i)));
  out.forgedAllNull = forged.every((k) => k === null);
  out.fetchesAfterFlood = fetches;
  now += 30;
  await cache.keyFor("forged-again");
  out.fetchesAfterInterval = fetches;
  console.log(JSON.stringify(out));
})();
"""


@needs_node
def test_node_jwks_cache_rate_limits_refetches() -> None:
    assert NODE is not None
    proc = subprocess.run(
        [NODE, "-e", NODE_CACHE_SCRIPT, str(NODE_APP), json.dumps(JWKS)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(proc.stdout) == {
        "known": True,
        "forgedAllNull": True,
        "fetchesAfterFlood": 1,
        "fetchesAfterInterval": 2,
    }
