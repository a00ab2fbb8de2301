"""`gateway serve` and `gateway migrate`."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from gateway.cli.common import config_options, fail, read_config
from gateway.config import GatewayConfig
from gateway.observability.logs import configure_logging
from gateway.runtime import run_worker, run_workers
from gateway.storage.factory import migrate_configured
from gateway.storage.migrations import MigrationError
from gateway.storage.ports import StoreUnavailable
from gateway.storage.state import StateError, open_state_dir
from gateway.tls import TlsError

log = logging.getLogger("gateway")


def upstream_override(url: str) -> list[dict[str, object]]:
    """`--upstream URL` defines one upstream named `default` serving every path."""
    return [{"name": "default", "url": url, "match": {"path_prefix": "/"}}]


@click.command()
@config_options
@click.option("--listen", help="HOST:PORT of the main listener (default 127.0.0.1:8080).")
@click.option("--upstream", help="URL of a single upstream named `default` for every path.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes sharing the port (SO_REUSEPORT); default 1.",
)
def serve(
    config_path: Path | None,
    state_dir: Path | None,
    listen: str | None,
    upstream: str | None,
    workers: int | None,
) -> None:
    """Run the gateway in front of the configured upstreams."""
    overrides: dict[str, object] = {}
    if listen:
        overrides["listen"] = listen
    if upstream:
        overrides["upstreams"] = upstream_override(upstream)
    if workers:
        overrides["workers"] = workers
    config = read_config(config_path, state_dir, overrides)
    configure_logging(config.logging.level, config.logging.format)
    if not config.upstreams:
        log.warning(
            "no upstream configured (pass --upstream URL or set `upstreams`): only the "
            "gateway's own endpoints and forward-auth (/.gateway/verify) are served"
        )
    run(config)


def run(config: GatewayConfig) -> None:
    """Prepares the state directory, then serves with one or several workers."""
    try:
        open_state_dir(config.state_dir)
    except StateError as exc:
        fail(str(exc))
    try:
        if config.workers > 1:
            raise SystemExit(run_workers(config, config.workers))
        run_worker(config, reuse_port=False)
    except (MigrationError, StoreUnavailable, StateError, TlsError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot listen on {config.listen}: {exc.strerror or exc}")


@click.command()
@config_options
def migrate(config_path: Path | None, state_dir: Path | None) -> None:
    """Create or upgrade the schema; running it twice is harmless."""
    config = read_config(config_path, state_dir)
    try:
        applied = asyncio.run(_migrate(config))
    except StateError as exc:
        fail(str(exc))
    if applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("schema is up to date")


async def _migrate(config: GatewayConfig) -> list[str]:
    try:
        return await migrate_configured(config, open_state_dir(config.state_dir))
    except (MigrationError, StoreUnavailable) as exc:
        fail(str(exc))
