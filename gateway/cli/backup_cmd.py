"""`gateway backup FILE` and `gateway restore FILE`: the embedded default's state, whole.

A backup may be taken while the gateway runs (SQLite's online backup gives a consistent
copy). Restore into a stopped gateway's state directory, then run `gateway audit verify`.
With PostgreSQL configured, back up the database with its own tools (pg_dump) instead.
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli.common import config_options, fail, read_config
from gateway.storage.backup import backup_state, restore_state
from gateway.storage.state import StateDir, StateError, open_state_dir


def _embedded_only(config_path: Path | None, state_dir: Path | None) -> Path:
    config = read_config(config_path, state_dir)
    if config.database_url is not None:
        fail("a PostgreSQL database is configured: back it up with pg_dump")
    return Path(config.state_dir)


@click.command("backup")
@config_options
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def backup(config_path: Path | None, state_dir: Path | None, file: Path) -> None:
    """Write the database and key files to FILE (a new file, mode 0600)."""
    root = _embedded_only(config_path, state_dir)
    try:
        backup_state(StateDir(root), file)
    except FileExistsError:
        fail(f"{file} exists: choose a new file name")
    except (StateError, OSError) as exc:
        fail(str(exc))
    click.echo(f"backed up {root} to {file}")


@click.command("restore")
@config_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing database.")
def restore(config_path: Path | None, state_dir: Path | None, file: Path, force: bool) -> None:
    """Restore the state directory from FILE (with the gateway stopped)."""
    root = _embedded_only(config_path, state_dir)
    try:
        written = restore_state(file, root, force=force)
        open_state_dir(root)  # vets the restored modes and the key ring
    except (StateError, OSError) as exc:
        fail(str(exc))
    click.echo(f"restored {len(written)} files into {root}; now run: gateway audit verify")
