"""Backing up and restoring the embedded default's state: one tar archive holding a consistent
copy of the SQLite database (SQLite's online backup: safe while the gateway runs) and the key
files (the master key and the signing key ring) without which the data cannot be used.

Guarantees: the archive is created with mode 0600 and never overwrites a file; a restore
accepts only the regular files a backup writes (no links, no other paths), refuses to
overwrite an existing database unless forced, and writes every file with mode 0600 in 0700
directories. Restore into a stopped gateway's state directory.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import tarfile
import tempfile
import time
from pathlib import Path

from gateway.storage.state import (
    DATABASE_FILE,
    MASTER_KEY_FILE,
    SIGNING_DIR,
    StateDir,
    StateError,
    replace_secret_file,
)

FORMAT = 1
MANIFEST = "manifest.json"
MAX_MEMBER_BYTES = 16 * 1024 * 1024 * 1024


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a live WAL database (SQLite's online backup API)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def key_files(state: StateDir) -> list[tuple[str, Path]]:
    """(archive name, path) of the master key and every signing-ring file."""
    files = [(MASTER_KEY_FILE, state.master_key_path)]
    if state.signing_dir.is_dir():
        for path in sorted(state.signing_dir.iterdir()):
            if path.is_file() and (path.suffix == ".pem" or path.name == "keys.json"):
                files.append((f"{SIGNING_DIR}/{path.name}", path))
    return files


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def backup_state(state: StateDir, dest: Path) -> dict[str, object]:
    """Writes the archive to `dest` (which must not exist); returns its manifest."""
    if not state.database.exists():
        raise StateError(f"no database at {state.database}: nothing to back up")
    # SECURITY: the archive holds the master key: created 0600, never over another file.
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    manifest: dict[str, object] = {"format": FORMAT, "created_at": time.time()}
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            copy = Path(tmp) / DATABASE_FILE
            copy_database(state.database, copy)
            _add_bytes(tar, DATABASE_FILE, copy.read_bytes())
        for name, path in key_files(state):
            _add_bytes(tar, name, path.read_bytes())
        _add_bytes(tar, MANIFEST, json.dumps(manifest).encode())
    return manifest


def allowed_member(member: tarfile.TarInfo) -> bool:
    """Only the regular files a backup writes, at the paths it writes them."""
    name = member.name
    # SECURITY: no links, devices or paths outside the state directory (tar traversal).
    if not member.isfile() or member.size > MAX_MEMBER_BYTES:
        return False
    if name in (DATABASE_FILE, MASTER_KEY_FILE, MANIFEST):
        return True
    head, _, tail = name.partition("/")
    plain = tail and "/" not in tail and not tail.startswith(".")
    return bool(head == SIGNING_DIR and plain and (tail.endswith(".pem") or tail == "keys.json"))


def read_archive(archive: Path) -> dict[str, bytes]:
    """The archive's files by name; StateError for anything a backup would not contain."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar.getmembers():
                if not allowed_member(member):
                    raise StateError(f"{archive}: unexpected entry {member.name!r}")
                extracted = tar.extractfile(member)
                assert extracted is not None
                files[member.name] = extracted.read()
    except (tarfile.TarError, OSError) as exc:
        raise StateError(f"{archive} is not a gateway backup: {exc}") from None
    manifest = json.loads(files.get(MANIFEST, b"{}") or b"{}")
    if manifest.get("format") != FORMAT or DATABASE_FILE not in files:
        raise StateError(f"{archive} is not a gateway backup of format {FORMAT}")
    return files


def restore_state(archive: Path, root: Path, *, force: bool = False) -> list[str]:
    """Restores the archive into the state directory `root`; returns the files written."""
    files = read_archive(archive)
    state = StateDir(root)
    if state.database.exists() and not force:
        raise StateError(f"{state.database} exists: restore into an empty state directory")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    (root / SIGNING_DIR).mkdir(mode=0o700, exist_ok=True)
    for suffix in ("-wal", "-shm"):
        (root / f"{DATABASE_FILE}{suffix}").unlink(missing_ok=True)
    written = []
    for name, data in sorted(files.items()):
        if name != MANIFEST:
            replace_secret_file(root / name, data)
            written.append(name)
    return written
