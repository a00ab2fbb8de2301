"""The assertion signing key ring: which Ed25519 key signs now, which keys verifiers may see.

On disk (the state directory's `signing/`): one 0600 PEM per key, and `keys.json` (0600,
replaced atomically) holding each key's timeline:

- `activates_at`: from then on the key may sign; the newest activated, published key signs;
- `retires_at`: from then on the key is no longer published (None: not scheduled).

Rotation guarantees the two overlap rules of a JWKS rotation: the new key is published
`publish_delay` seconds before it signs (so verifiers that cache the JWKS fetch it first), and
the old key stays published until the last assertion it signed has expired (activation of
the new key + ASSERTION_LIFETIME + RETIRE_MARGIN). Running processes re-read the metadata
when the file changes, checked at most once per RELOAD_INTERVAL.
"""

from __future__ import annotations

import base64
import enum
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.storage.state import (
    StateDir,
    StateError,
    check_private_mode,
    create_signing_key,
    load_signing_key,
    replace_secret_file,
    signing_lock,
)

ASSERTION_LIFETIME = 60
"""Seconds an assertion is valid (`exp - iat`); rotation keeps old keys at least this long."""
RETIRE_MARGIN = 30.0
"""Extra seconds an old key stays published, for clock skew between gateway and verifiers."""
DEFAULT_PUBLISH_DELAY = 90.0
RELOAD_INTERVAL = 1.0
KID = re.compile(r"[A-Za-z0-9_-]{1,64}")
log = logging.getLogger("gateway.signing")


class KeyState(enum.StrEnum):
    """Where a key is in its life at a given time (what `gateway keys list` shows)."""

    PENDING = "pending"  # published, not yet signing
    ACTIVE = "active"  # the one that signs
    RETIRING = "retiring"  # superseded, still published for verifiers
    RETIRED = "retired"  # no longer published


@dataclass(frozen=True, slots=True)
class KeyMeta:
    """One key's timeline (Unix seconds)."""

    kid: str
    created_at: float
    activates_at: float
    retires_at: float | None = None

    def published(self, now: float) -> bool:
        return self.retires_at is None or now < self.retires_at


def _time(entry: dict[str, Any], name: str) -> float:
    value = entry.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StateError(f"signing key metadata: `{name}` must be a number")
    return float(value)


def parse_meta(raw: bytes) -> tuple[KeyMeta, ...]:
    """The ring's entries from `keys.json`; raises StateError on anything malformed."""
    try:
        doc = json.loads(raw)
        entries = doc["keys"] if doc.get("version") == 1 else None
    except (ValueError, TypeError, KeyError, AttributeError):
        entries = None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise StateError("signing key metadata (signing/keys.json) is not a version 1 ring")
    metas = []
    for entry in entries:
        kid = entry.get("kid")
        # SECURITY: the kid names a file; refuse anything that could leave the directory.
        if not isinstance(kid, str) or not KID.fullmatch(kid):
            raise StateError(f"signing key metadata: invalid kid {kid!r}")
        retires = None if entry.get("retires_at") is None else _time(entry, "retires_at")
        metas.append(
            KeyMeta(kid, _time(entry, "created_at"), _time(entry, "activates_at"), retires)
        )
    if len({m.kid for m in metas}) != len(metas):
        raise StateError("signing key metadata: duplicate kid")
    return tuple(metas)


def dump_meta(metas: Iterable[KeyMeta]) -> bytes:
    keys = [
        {"kid": m.kid, "created_at": m.created_at, "activates_at": m.activates_at}
        | ({"retires_at": m.retires_at} if m.retires_at is not None else {})
        for m in metas
    ]
    return json.dumps({"version": 1, "keys": keys}, indent=2).encode()


def read_meta(state: StateDir) -> tuple[KeyMeta, ...]:
    """The ring as stored, after checking the file is 0600."""
    check_private_mode(state.signing_meta_path)
    return parse_meta(state.signing_meta_path.read_bytes())


def signer_meta(metas: Iterable[KeyMeta], now: float) -> KeyMeta | None:
    """The key that signs at `now`: the newest published key whose activation has come."""
    ready = [m for m in metas if m.activates_at <= now and m.published(now)]
    return max(ready, key=lambda m: (m.activates_at, m.created_at), default=None)


def next_change(metas: Iterable[KeyMeta], now: float) -> float:
    """The first activation or retirement after `now` (inf: none); until then `signer_meta`
    gives the same key, since it reads nothing else of the clock."""
    times = [t for m in metas for t in (m.activates_at, m.retires_at) if t is not None and t > now]
    return min(times, default=math.inf)


def key_state(meta: KeyMeta, signer: KeyMeta | None, now: float) -> KeyState:
    if not meta.published(now):
        return KeyState.RETIRED
    if meta.activates_at > now:
        return KeyState.PENDING
    return KeyState.ACTIVE if signer is not None and meta.kid == signer.kid else KeyState.RETIRING


def plan_rotation(
    metas: Iterable[KeyMeta], new_kid: str, now: float, publish_delay: float
) -> tuple[KeyMeta, ...]:
    """The ring after adding `new_kid`: published now, signing after `publish_delay`.

    Every still-published key without a retirement retires once the last assertion it can
    sign has expired; keys already retired are dropped.
    """
    new = KeyMeta(new_kid, now, now + publish_delay)
    retire_at = new.activates_at + ASSERTION_LIFETIME + RETIRE_MARGIN
    kept = [
        m if m.retires_at is not None else replace(m, retires_at=retire_at)
        for m in metas
        if m.published(now)
    ]
    return (*kept, new)


def rotate(state: StateDir, now: float, publish_delay: float) -> tuple[KeyMeta, ...]:
    """Adds a new key to the stored ring (see `plan_rotation`); returns the new ring, the new
    key last. The PEM is written before the metadata naming it, so readers never see a kid
    without its key; PEMs of dropped keys are removed afterwards."""
    with signing_lock(state):
        before = read_meta(state)
        after = plan_rotation(before, create_signing_key(state), now, publish_delay)
        replace_secret_file(state.signing_meta_path, dump_meta(after))
        kept = {m.kid for m in after}
        for meta in before:
            if meta.kid not in kept:
                state.signing_key_path(meta.kid).unlink(missing_ok=True)
    return after


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A loaded key: its timeline, the private key, and the public JWK verifiers get."""

    meta: KeyMeta
    private: Ed25519PrivateKey = field(repr=False)

    @property
    def kid(self) -> str:
        return self.meta.kid

    def public_jwk(self) -> dict[str, str]:
        """The OKP/Ed25519 public JWK; built from the public bytes only, so no `d`."""
        # SECURITY: never serialize the private key object: its JWK would carry `d`.
        raw = self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": x,
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }


class KeyRing:
    """The stored ring as a running process sees it, following changes on disk.

    `signer()` and `published()` re-check the metadata file at most once per
    RELOAD_INTERVAL; a change (new inode, size or mtime) reloads it. A reload that fails keeps
    the previous ring (and is retried), so a bad edit never stops signing.
    """

    def __init__(self, state: StateDir, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.clock = clock
        self._load = load_signing_key(state)
        self._metas: tuple[KeyMeta, ...] = ()
        self._keys: dict[str, Ed25519PrivateKey] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = -math.inf
        # (ring, computed at, valid until, key): `signer()`'s answer until the ring changes.
        self._signer: tuple[tuple[KeyMeta, ...], float, float, SigningKey] | None = None
        self.reload()

    def reload(self) -> None:
        """Reads the metadata and the published keys now; raises StateError on failure."""
        st = self.state.signing_meta_path.stat()
        metas = read_meta(self.state)
        now = self.clock()
        keys = {
            m.kid: self._keys.get(m.kid) or self._load(m.kid) for m in metas if m.published(now)
        }
        self._metas, self._keys = metas, keys
        self._stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        self._checked = now

    def refresh(self, now: float) -> None:
        """Reloads when RELOAD_INTERVAL has passed and the file changed (or the clock went back)."""
        if 0 <= now - self._checked < RELOAD_INTERVAL:
            return
        self._checked = now
        try:
            st = self.state.signing_meta_path.stat()
            if (st.st_ino, st.st_size, st.st_mtime_ns) != self._stamp:
                self.reload()
        except (OSError, ValueError, StateError) as exc:
            log.warning("signing key ring not reloaded, keeping the previous one: %s", exc)

    def _key(self, meta: KeyMeta) -> SigningKey:
        private = self._keys.get(meta.kid)
        if private is None:
            private = self._keys[meta.kid] = self._load(meta.kid)
        return SigningKey(meta, private)

    def signer(self) -> SigningKey:
        """The key that signs now; StateError when no published key has activated."""
        now = self.clock()
        self.refresh(now)
        memo = self._signer
        # The same ring, and no activation or retirement since: the same key signs.
        if memo is not None and memo[0] is self._metas and memo[1] <= now < memo[2]:
            return memo[3]
        meta = signer_meta(self._metas, now)
        if meta is None:
            raise StateError("no active signing key (see `gateway keys list`)")
        key = self._key(meta)
        self._signer = (self._metas, now, next_change(self._metas, now), key)
        return key

    def published(self) -> tuple[SigningKey, ...]:
        """Every key verifiers may see now: pending, active and retiring ones."""
        now = self.clock()
        self.refresh(now)
        return tuple(self._key(m) for m in self._metas if m.published(now))
