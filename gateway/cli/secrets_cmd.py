"""`gateway secrets put|list|delete`: tenants' envelope-encrypted secrets from the shell.

Guarantees: a value is read from standard input only (never an argument, an option or the
environment, which other local users or shell history may see); no command prints a value;
every change is audited with the CLI as actor.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from gateway.audit.events import CLI_CONTEXT
from gateway.cli.bootstrap import CLI_ACTOR, run_with_services
from gateway.cli.common import config_options, fail
from gateway.cli.services import CliServices
from gateway.identity.models import Tenant
from gateway.secrets.ports import ProviderError
from gateway.secrets.service import SecretError, SecretService
from gateway.secrets.values import SecretValue
from gateway.secrets.wiring import open_secret_service
from gateway.storage.state import open_state_dir

T = TypeVar("T")


def with_secrets(
    config_path: Path | None,
    state_dir: Path | None,
    tenant_ref: str,
    action: Callable[[SecretService, Tenant], Awaitable[T]],
) -> T:
    """Runs `action` with the secrets service and the tenant (slug or id); one-line errors."""

    async def run(services: CliServices) -> T:
        identity = services.identity
        tenant = await identity.tenant_by_slug(tenant_ref) or await identity.tenant_by_id(
            tenant_ref
        )
        if tenant is None:
            fail(f"unknown tenant {tenant_ref!r}")
        state = open_state_dir(services.config.state_dir)
        async with open_secret_service(services.stores, state) as service:
            try:
                return await action(service, tenant)
            except SecretError as exc:
                fail(exc.message)
            except ProviderError as exc:
                fail(f"key provider: {exc}")

    return run_with_services(config_path, state_dir, run)


def read_value_stdin() -> SecretValue:
    """The value from standard input; one trailing newline (from `echo`) is dropped."""
    data = sys.stdin.read()
    value = data[:-1] if data.endswith("\n") else data
    if not value:
        fail("no value on standard input")
    return SecretValue(value)


@click.group("secrets")
def secrets_group() -> None:
    """Store tenants' secrets (envelope-encrypted) for upstreams to resolve."""


@secrets_group.command("put")
@config_options
@click.argument("tenant")
@click.argument("name")
def secrets_put(config_path: Path | None, state_dir: Path | None, tenant: str, name: str) -> None:
    """Store the value on standard input as the next version of NAME in TENANT."""
    value = read_value_stdin()

    async def action(service: SecretService, found: Tenant) -> tuple[str, int]:
        return await service.put(found.id, found.slug, name, value, CLI_ACTOR, CLI_CONTEXT)

    ref, version = with_secrets(config_path, state_dir, tenant, action)
    click.echo(f"{ref} (version {version})")


@secrets_group.command("list")
@config_options
@click.argument("tenant")
def secrets_list(config_path: Path | None, state_dir: Path | None, tenant: str) -> None:
    """List TENANT's secrets: name, latest version, number of versions, KEK. Never values."""

    async def action(service: SecretService, found: Tenant) -> list[str]:
        rows = [("NAME", "LATEST", "VERSIONS", "KEK")]
        for meta in await service.list(found.id):
            rows.append((meta.name, str(meta.latest_version), str(meta.versions), meta.kek.label))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return [
            "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[3]]) for r in rows
        ]

    for line in with_secrets(config_path, state_dir, tenant, action):
        click.echo(line)


@secrets_group.command("delete")
@config_options
@click.argument("tenant")
@click.argument("name")
def secrets_delete(
    config_path: Path | None, state_dir: Path | None, tenant: str, name: str
) -> None:
    """Destroy every version of NAME in TENANT."""

    async def action(service: SecretService, found: Tenant) -> None:
        await service.delete(found.id, name, CLI_ACTOR, CLI_CONTEXT)

    with_secrets(config_path, state_dir, tenant, action)
    click.echo(f"deleted {name}")
