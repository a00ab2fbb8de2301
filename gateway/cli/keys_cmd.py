"""`gateway keys rotate` and `gateway keys list`: the assertion signing key ring;
`gateway keys rotate-kek --tenant T`: a tenant's secrets key-encryption key."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click

from gateway.audit.events import CLI_CONTEXT
from gateway.cli.bootstrap import CLI_ACTOR
from gateway.cli.common import config_options, fail, read_config
from gateway.cli.secrets_cmd import with_secrets
from gateway.identity.models import Tenant
from gateway.identity.signing_keys import (
    DEFAULT_PUBLISH_DELAY,
    KeyMeta,
    key_state,
    read_meta,
    rotate,
    signer_meta,
)
from gateway.secrets.service import Rotation, SecretService
from gateway.storage.state import StateDir, StateError, open_state_dir
from gateway.web.jwks import JWKS_MAX_AGE


def when(ts: float | None) -> str:
    """A Unix time as ISO 8601 UTC (seconds), or `-`."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def open_state(config_path: Path | None, state_dir: Path | None) -> StateDir:
    """The configured state directory (created with a first key when missing), or exit 1."""
    config = read_config(config_path, state_dir)
    try:
        return open_state_dir(config.state_dir)
    except StateError as exc:
        fail(str(exc))


@click.group("keys")
def keys_group() -> None:
    """Manage the keys that sign X-Gateway-Assertion."""


@keys_group.command("rotate")
@config_options
@click.option(
    "--publish-delay",
    type=click.FloatRange(min=0),
    default=DEFAULT_PUBLISH_DELAY,
    show_default=True,
    help="Seconds the new key is published in the JWKS before it starts signing.",
)
def keys_rotate(config_path: Path | None, state_dir: Path | None, publish_delay: float) -> None:
    """Add a signing key: published now, signing after --publish-delay; the previous key
    stays published until the last assertion it signed has expired."""
    state = open_state(config_path, state_dir)
    now = time.time()
    try:
        *kept, new = rotate(state, now, publish_delay)
    except StateError as exc:
        fail(str(exc))
    if publish_delay < JWKS_MAX_AGE:
        click.echo(
            f"gateway: warning: --publish-delay {publish_delay:g} is shorter than the JWKS "
            f"cache lifetime ({JWKS_MAX_AGE} s); verifiers may not know the new key yet",
            err=True,
        )
    click.echo(f"new key {new.kid}: published now, signs from {when(new.activates_at)}")
    old = signer_meta(kept, now)
    if old is not None:
        click.echo(f"previous key {old.kid}: retires at {when(old.retires_at)}")


def list_rows(metas: list[KeyMeta], now: float) -> list[str]:
    """One aligned line per key: kid, state, created, activates, retires."""
    signer = signer_meta(metas, now)
    rows = [("KID", "STATE", "CREATED", "ACTIVATES", "RETIRES")]
    for meta in sorted(metas, key=lambda m: (m.activates_at, m.created_at)):
        state = key_state(meta, signer, now).value
        times = (when(meta.created_at), when(meta.activates_at), when(meta.retires_at))
        rows.append((meta.kid, state, *times))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[4]]) for r in rows]


@keys_group.command("list")
@config_options
def keys_list(config_path: Path | None, state_dir: Path | None) -> None:
    """Show every signing key with its state (pending, active, retiring, retired) and times."""
    state = open_state(config_path, state_dir)
    try:
        metas = list(read_meta(state))
    except StateError as exc:
        fail(str(exc))
    for line in list_rows(metas, time.time()):
        click.echo(line.rstrip())


@keys_group.command("rotate-kek")
@config_options
@click.option("--tenant", "tenant", required=True, help="Tenant slug or id.")
def keys_rotate_kek(config_path: Path | None, state_dir: Path | None, tenant: str) -> None:
    """Give TENANT's secrets a new key-encryption key version and re-wrap every data key
    with it; secret values are not re-encrypted (or ever decrypted)."""

    async def action(service: SecretService, found: Tenant) -> Rotation:
        return await service.rotate_kek(found.id, CLI_ACTOR, CLI_CONTEXT)

    done = with_secrets(config_path, state_dir, tenant, action)
    click.echo(f"KEK {done.old.label} -> {done.new.label}: {done.rewrapped} data keys re-wrapped")
