"""What every command shares: reading the configuration and failing with one clear line."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.storage.state import StateError

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> NoReturn:
    """Prints `gateway: message` on stderr and exits non-zero (never a traceback)."""
    click.echo(f"gateway: {message}", err=True)
    sys.exit(code)


def config_options(func: F) -> F:
    """Adds `--config FILE` and `--state-dir DIR`, which every command accepts."""
    func = click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Directory of the embedded default's database and key files (default ./.gateway).",
    )(func)
    func = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        envvar="GATEWAY_CONFIG",
        help="YAML configuration file (or GATEWAY_CONFIG).",
    )(func)
    return func


def read_config(
    config_path: Path | None,
    state_dir: Path | None,
    overrides: Mapping[str, object] | None = None,
) -> GatewayConfig:
    """The effective configuration (flags > GATEWAY_* env > file > defaults), or exit 2."""
    merged: dict[str, object] = dict(overrides or {})
    if state_dir is not None:
        merged["state_dir"] = str(state_dir)
    try:
        return load_config(config_path, env=os.environ, overrides=merged)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            click.echo(f"gateway: {line}", err=True)
        sys.exit(2)


def guard_state_errors(exc: StateError) -> NoReturn:
    """Reports an unusable state directory as one line."""
    fail(str(exc))
