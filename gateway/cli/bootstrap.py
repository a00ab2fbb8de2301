"""`gateway tenants create`, `gateway users create`, `gateway operators grant`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from gateway.audit.events import CLI_CONTEXT, Actor
from gateway.cli.common import config_options, fail, read_config
from gateway.cli.services import CliServices, open_cli_services
from gateway.identity.errors import IdentityError
from gateway.storage.ports import StoreUnavailable
from gateway.storage.state import StateError

T = TypeVar("T")
CLI_ACTOR = Actor("system", "cli")


def run_with_services(
    config_path: Path | None,
    state_dir: Path | None,
    action: Callable[[CliServices], Awaitable[T]],
) -> T:
    """Runs `action` over the configured services; identity and store errors are one line."""
    config = read_config(config_path, state_dir)

    async def main() -> T:
        async with open_cli_services(config) as services:
            return await action(services)

    try:
        return asyncio.run(main())
    except IdentityError as exc:
        fail(exc.message)
    except (StateError, StoreUnavailable) as exc:
        fail(str(exc))


def read_password_stdin() -> str:
    """The password from standard input (one line; never from an argument or the env)."""
    line = sys.stdin.readline()
    password = line[:-1] if line.endswith("\n") else line
    if not password:
        fail("no password on standard input")
    return password


@click.group("tenants")
def tenants_group() -> None:
    """Create and manage tenants."""


@tenants_group.command("create")
@config_options
@click.argument("slug")
def tenants_create(config_path: Path | None, state_dir: Path | None, slug: str) -> None:
    """Create the tenant SLUG ([a-z0-9-]{2,63})."""
    tenant = run_with_services(
        config_path,
        state_dir,
        lambda s: s.identity.create_tenant(slug, CLI_ACTOR, CLI_CONTEXT),
    )
    click.echo(f"created tenant {tenant.slug} ({tenant.id})")


@click.group("users")
def users_group() -> None:
    """Create and manage users."""


@users_group.command("create")
@config_options
@click.argument("email")
@click.option("--tenant", required=True, help="Tenant slug the user joins.")
@click.option("--role", type=click.Choice(["viewer", "editor", "admin"]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create(
    config_path: Path | None,
    state_dir: Path | None,
    email: str,
    tenant: str,
    role: str,
    password_stdin: bool,
) -> None:
    """Create EMAIL as a member of --tenant with --role (or add the membership)."""
    if not password_stdin:
        fail("pass --password-stdin and the password on standard input")
    password = read_password_stdin()
    user = run_with_services(
        config_path,
        state_dir,
        lambda s: s.identity.create_user(email, password, tenant, role, CLI_ACTOR, CLI_CONTEXT),
    )
    click.echo(f"{user.email} ({user.id}) is {role} of {tenant}")


@click.group("operators")
def operators_group() -> None:
    """Grant the platform role `operator`."""


@operators_group.command("grant")
@config_options
@click.argument("email")
def operators_grant(config_path: Path | None, state_dir: Path | None, email: str) -> None:
    """Make the existing account EMAIL an operator of every tenant."""
    user = run_with_services(
        config_path,
        state_dir,
        lambda s: s.identity.grant_operator(email, CLI_ACTOR, CLI_CONTEXT),
    )
    click.echo(f"{user.email} ({user.id}) is an operator")
