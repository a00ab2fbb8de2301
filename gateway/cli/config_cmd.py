"""`gateway config check FILE`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from gateway.cli.common import fail
from gateway.config import ConfigError, config_summary, load_config


@click.group("config")
def config_group() -> None:
    """Inspect and validate configuration."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--print", "show", is_flag=True, help="Print the effective configuration (secrets redacted)."
)
def check(file: Path, show: bool) -> None:
    """Validate FILE (with GATEWAY_* overrides), listing every problem at once."""
    try:
        config = load_config(file, env=os.environ)
    except ConfigError as exc:
        lines = str(exc).splitlines()
        for line in lines:
            click.echo(line, err=True)
        raise SystemExit(1) from None
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    if show:
        click.echo(json.dumps(config_summary(config), indent=2, default=str))
    click.echo(f"{file}: configuration is valid")
