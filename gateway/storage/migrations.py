"""Versioned SQL migrations shipped inside the package, one directory per backend.

A migration is a file `NNNN_name.sql`. Applied versions are recorded with a checksum, so
running migrations twice is harmless, an edited migration is detected, and a database that
is newer than the code is refused rather than misread.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """The schema cannot be brought to the code's version; the message says why."""


@dataclass(frozen=True)
class Migration:
    """One versioned schema change."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(package: str) -> tuple[Migration, ...]:
    """The migrations in `package`'s `migrations/` directory, in version order, gap-free."""
    found = []
    for entry in resources.files(package).joinpath("migrations").iterdir():
        match = FILE_RE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(f"migration {expected:04d} is missing in {package}")
    return tuple(found)


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands relative to the code."""

    current: int
    latest: int

    @property
    def outdated(self) -> bool:
        return self.current < self.latest

    @property
    def too_new(self) -> bool:
        return self.current > self.latest


def verify_applied(applied: dict[int, str], migrations: tuple[Migration, ...]) -> None:
    """Refuses a database whose recorded checksums differ from the shipped migrations."""
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} was changed after it "
                "was applied; restore the original file"
            )
    if applied and max(applied) > len(migrations):
        raise MigrationError(
            f"the database schema (version {max(applied)}) is newer than this gateway "
            f"(version {len(migrations)}); upgrade the gateway"
        )
