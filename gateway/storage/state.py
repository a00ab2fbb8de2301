"""The embedded default's state directory and the key files it holds.

Key files are created once with mode 0600 inside a 0700 directory, written without a window
in which another user could read them, and refused when their mode has been widened.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MASTER_KEY_FILE = "master.key"
SIGNING_DIR = "signing"
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


def ensure_signing_key(state: StateDir) -> Path:
    """The path of the current Ed25519 signing key, generated on first use."""
    state.signing_dir.mkdir(mode=0o700, exist_ok=True)
    keys = sorted(state.signing_dir.glob("*.pem"))
    if not keys:
        kid = secrets.token_hex(8)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_secret_file(state.signing_dir / f"{kid}.pem", pem)
        keys = sorted(state.signing_dir.glob("*.pem"))
    for key in keys:
        check_private_mode(key)
    return keys[-1]


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
