"""The embedded default's state directory and the key files it holds.

Key files are created once with mode 0600 inside a 0700 directory, written without a window
in which another user could read them, and refused when their mode has been widened.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MASTER_KEY_FILE = "master.key"
SIGNING_DIR = "signing"
SIGNING_META_FILE = "keys.json"
SIGNING_LOCK_FILE = ".lock"
DATABASE_FILE = "gateway.db"


class StateError(Exception):
    """The state directory or a key file is unusable; the message says how to fix it."""


@dataclass(frozen=True)
class StateDir:
    """A prepared state directory with paths to the database and the key material."""

    root: Path

    @property
    def database(self) -> Path:
        return self.root / DATABASE_FILE

    @property
    def master_key_path(self) -> Path:
        return self.root / MASTER_KEY_FILE

    @property
    def signing_dir(self) -> Path:
        return self.root / SIGNING_DIR

    @property
    def signing_meta_path(self) -> Path:
        """The signing key ring's metadata (kids and their timeline), JSON, 0600."""
        return self.signing_dir / SIGNING_META_FILE

    def signing_key_path(self, kid: str) -> Path:
        return self.signing_dir / f"{kid}.pem"


def write_secret_file(path: Path, data: bytes) -> None:
    """Creates `path` with mode 0600 atomically; an existing file is never overwritten."""
    # SECURITY: O_EXCL + mode at creation: no moment where the key is world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def check_private_mode(path: Path) -> None:
    """Refuses a key file that group or others can access."""
    mode = stat.S_IMODE(path.stat().st_mode)
    # SECURITY: a key readable by other local users is a leaked key.
    if mode & 0o077:
        raise StateError(
            f"{path} has mode {mode:04o}; key files must be 0600 (run: chmod 600 {path})"
        )


def read_secret_file(path: Path) -> bytes:
    """Reads a key file after checking its mode."""
    check_private_mode(path)
    return path.read_bytes()


def ensure_master_key(state: StateDir) -> bytes:
    """The 32-byte master key, generated on first use."""
    path = state.master_key_path
    if not path.exists():
        write_secret_file(path, secrets.token_bytes(32))
    key = read_secret_file(path)
    if len(key) != 32:
        raise StateError(f"{path} must hold exactly 32 bytes")
    return key


def replace_secret_file(path: Path, data: bytes) -> None:
    """Replaces `path` atomically with `data` (mode 0600): readers see the old or the new
    content, never a partial file, and never a moment where the content is world-readable."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    write_secret_file(tmp, data)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def signing_lock(state: StateDir) -> Iterator[None]:
    """Serializes changes to the signing key ring across processes (an exclusive flock)."""
    state.signing_dir.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(state.signing_dir / SIGNING_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def create_signing_key(state: StateDir) -> str:
    """Generates a new Ed25519 key in `signing/<kid>.pem` (0600) and returns its kid."""
    state.signing_dir.mkdir(mode=0o700, exist_ok=True)
    kid = secrets.token_hex(8)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_secret_file(state.signing_key_path(kid), pem)
    return kid


def load_signing_key(state: StateDir) -> Callable[[str], Ed25519PrivateKey]:
    """A loader of `signing/<kid>.pem`, refusing widened modes and non-Ed25519 keys."""

    def load(kid: str) -> Ed25519PrivateKey:
        key = serialization.load_pem_private_key(
            read_secret_file(state.signing_key_path(kid)), None
        )
        if not isinstance(key, Ed25519PrivateKey):
            raise StateError(f"{state.signing_key_path(kid)} is not an Ed25519 key")
        return key

    return load


def _initial_ring(state: StateDir) -> list[dict[str, object]]:
    """Ring entries for a directory without metadata: a new key signing now, or the key
    files of an older version adopted as they are (each active since it was written)."""
    pems = sorted(state.signing_dir.glob("*.pem"), key=lambda p: p.stat().st_mtime)
    if not pems:
        now = time.time()
        return [{"kid": create_signing_key(state), "created_at": now, "activates_at": now}]
    return [
        {"kid": p.stem, "created_at": p.stat().st_mtime, "activates_at": p.stat().st_mtime}
        for p in pems
    ]


def ensure_signing_key(state: StateDir) -> Path:
    """The signing key ring's metadata file, created on first use (see `_initial_ring`);
    it must be a well-formed ring, and it and every key file must be 0600."""
    # Imported here: the ring's format module builds on this one's file primitives.
    from gateway.identity.signing_keys import read_meta

    with signing_lock(state):
        meta = state.signing_meta_path
        if not meta.exists():
            doc = {"version": 1, "keys": _initial_ring(state)}
            replace_secret_file(meta, json.dumps(doc, indent=2).encode())
        read_meta(state)  # refuses a widened mode or a malformed ring before serving
        for key in state.signing_dir.glob("*.pem"):
            check_private_mode(key)
    return meta


def open_state_dir(root: Path) -> StateDir:
    """Creates the directory (0700) and its key files when missing, and vets their modes."""
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"cannot create state directory {root}: {exc.strerror}") from None
    mode = stat.S_IMODE(root.stat().st_mode)
    if mode & 0o022:
        raise StateError(f"{root} is writable by others (mode {mode:04o}); run: chmod 700 {root}")
    state = StateDir(root)
    ensure_master_key(state)
    ensure_signing_key(state)
    return state
