"""The signing key ring: states over time, rotation timeline, metadata file, JWKS shape."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.identity.signing_keys import (
    ASSERTION_LIFETIME,
    RETIRE_MARGIN,
    KeyRing,
    KeyState,
    key_state,
    parse_meta,
    read_meta,
    rotate,
    signer_meta,
)
from gateway.storage.state import StateDir, StateError, open_state_dir, replace_secret_file
from gateway.web.jwks import jwks_document


class Clock:
    """A settable clock (Unix seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def states(state: StateDir, now: float) -> dict[str, KeyState]:
    metas = read_meta(state)
    signer = signer_meta(metas, now)
    return {m.kid: key_state(m, signer, now) for m in metas}


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    return open_state_dir(tmp_path / "s")


def test_first_start_creates_one_key_that_signs_at_once(state: StateDir) -> None:
    ring = KeyRing(state)
    (meta,) = read_meta(state)
    assert ring.signer().kid == meta.kid
    assert [k.kid for k in ring.published()] == [meta.kid]
    for path in (state.signing_meta_path, state.signing_key_path(meta.kid)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(state.signing_dir.stat().st_mode) == 0o700
    assert read_meta(open_state_dir(state.root)) == (meta,)  # stable across restarts


def test_rotation_publishes_first_signs_later_and_retires_after_last_assertion(
    state: StateDir,
) -> None:
    (old,) = read_meta(state)
    t0 = old.activates_at + 1000
    clock = Clock(t0)
    ring = KeyRing(state, clock)
    *_, new = rotate(state, t0, publish_delay=60)
    ring.reload()
    retire = t0 + 60 + ASSERTION_LIFETIME + RETIRE_MARGIN
    assert read_meta(state)[0].retires_at == retire
    timeline = [
        (t0, old.kid, {old.kid: KeyState.ACTIVE, new.kid: KeyState.PENDING}),
        (t0 + 59.9, old.kid, {old.kid: KeyState.ACTIVE, new.kid: KeyState.PENDING}),
        (t0 + 60, new.kid, {old.kid: KeyState.RETIRING, new.kid: KeyState.ACTIVE}),
        (retire - 0.1, new.kid, {old.kid: KeyState.RETIRING, new.kid: KeyState.ACTIVE}),
        (retire, new.kid, {old.kid: KeyState.RETIRED, new.kid: KeyState.ACTIVE}),
    ]
    for now, signer, expected in timeline:
        clock.now = now
        assert ring.signer().kid == signer, now
        assert states(state, now) == expected, now
        published = {k.kid for k in ring.published()}
        assert published == {k for k, s in expected.items() if s is not KeyState.RETIRED}


def test_the_remembered_signer_follows_a_clock_that_goes_back(state: StateDir) -> None:
    (old,) = read_meta(state)
    t0 = old.activates_at + 1000
    clock = Clock(t0)
    ring = KeyRing(state, clock)
    *_, new = rotate(state, t0, publish_delay=60)
    ring.reload()
    for now, signer in [(t0 + 60, new.kid), (t0 + 30, old.kid), (t0 + 61, new.kid)]:
        clock.now = now
        assert ring.signer().kid == signer, now


def test_quick_second_rotation_schedules_every_superseded_key(state: StateDir) -> None:
    (a,) = read_meta(state)
    t0 = a.activates_at + 10
    rotate(state, t0, 60)
    a1, b, c = rotate(state, t0 + 10, 60)
    assert a1.retires_at == t0 + 60 + ASSERTION_LIFETIME + RETIRE_MARGIN  # unchanged
    assert b.retires_at == c.activates_at + ASSERTION_LIFETIME + RETIRE_MARGIN
    assert c.retires_at is None


def test_rotation_drops_retired_keys_and_their_files(state: StateDir) -> None:
    (a,) = read_meta(state)
    t0 = a.activates_at + 10
    *_, b = rotate(state, t0, 0)
    later = t0 + 3600
    kept = rotate(state, later, 60)
    assert [m.kid for m in kept][:1] == [b.kid]
    assert a.kid not in {m.kid for m in kept}
    assert not state.signing_key_path(a.kid).exists()


def test_running_ring_follows_the_file_at_most_once_per_interval(state: StateDir) -> None:
    (a,) = read_meta(state)
    clock = Clock(a.activates_at + 10)
    ring = KeyRing(state, clock)
    *_, b = rotate(state, clock.now, 0)
    clock.now += 0.5
    assert ring.signer().kid == a.kid  # not re-checked yet
    clock.now += 0.5
    assert ring.signer().kid == b.kid


def test_a_broken_metadata_file_keeps_the_previous_ring(state: StateDir) -> None:
    (a,) = read_meta(state)
    clock = Clock(a.activates_at + 10)
    ring = KeyRing(state, clock)
    replace_secret_file(state.signing_meta_path, b"{not json")
    clock.now += 2
    assert ring.signer().kid == a.kid


def test_metadata_is_replaced_atomically_with_mode_0600(
    state: StateDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = state.signing_meta_path.read_bytes()
    inode = state.signing_meta_path.stat().st_ino
    rotate(state, read_meta(state)[0].activates_at + 1, 60)
    assert state.signing_meta_path.stat().st_ino != inode  # a new file, renamed into place
    assert stat.S_IMODE(state.signing_meta_path.stat().st_mode) == 0o600
    current = state.signing_meta_path.read_bytes()

    def broken_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        replace_secret_file(state.signing_meta_path, before)
    assert state.signing_meta_path.read_bytes() == current
    assert [p.name for p in state.signing_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_widened_metadata_mode_is_refused(state: StateDir) -> None:
    os.chmod(state.signing_meta_path, 0o644)
    with pytest.raises(StateError, match="0600"):
        open_state_dir(state.root)


@pytest.mark.parametrize(
    "doc",
    [
        {"version": 1, "keys": [{"kid": "../../etc/x", "created_at": 1, "activates_at": 1}]},
        {"version": 1, "keys": [{"kid": "a", "created_at": "x", "activates_at": 1}]},
        {"version": 2, "keys": []},
        {"version": 1, "keys": [{"kid": "a", "created_at": 1, "activates_at": 1}] * 2},
    ],
)
def test_malformed_metadata_is_refused(doc: object) -> None:
    with pytest.raises(StateError):
        parse_meta(json.dumps(doc).encode())


def test_key_files_of_an_older_version_are_adopted(tmp_path: Path) -> None:
    state = open_state_dir(tmp_path / "s")
    (meta,) = read_meta(state)
    state.signing_meta_path.unlink()
    again = open_state_dir(tmp_path / "s")
    assert [m.kid for m in read_meta(again)] == [meta.kid]
    assert KeyRing(again).signer().kid == meta.kid


def test_jwks_carries_public_parts_only(state: StateDir) -> None:
    (a,) = read_meta(state)
    rotate(state, a.activates_at + 1, 60)
    ring = KeyRing(state, Clock(a.activates_at + 2))
    doc = jwks_document(ring)
    assert len(doc["keys"]) == 2
    for jwk, key in zip(doc["keys"], ring.published(), strict=True):
        assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
        assert "d" not in jwk
        assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == (
            "OKP",
            "Ed25519",
            "EdDSA",
            "sig",
        )
        raw = key.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        assert base64.urlsafe_b64decode(jwk["x"] + "=") == raw
