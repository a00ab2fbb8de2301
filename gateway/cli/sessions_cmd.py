"""`gateway sessions list|revoke`: session administration against the configured stores.

Revocations are written to the shared store (with their audit event) and announced on the
change bus: running gateways refuse the sessions at once when Redis carries the bus, and
within their cache bound (1 s) on the embedded default.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.audit.events import CLI_CONTEXT
from gateway.cli.bootstrap import CLI_ACTOR, run_with_services
from gateway.cli.common import config_options, fail
from gateway.cli.services import CliServices
from gateway.identity.errors import IdentityError


async def tenant_id_of(services: CliServices, slug: str | None) -> str | None:
    """The id of the tenant SLUG (or id); None for None; a one-line failure when unknown."""
    if slug is None:
        return None
    tenant = await services.identity.tenant_by_slug(slug) or await services.identity.tenant_by_id(
        slug
    )
    if tenant is None:
        raise IdentityError(f"no tenant {slug}")
    return tenant.id


async def _user_id(services: CliServices, email: str | None) -> str | None:
    if email is None:
        return None
    user = await services.identity.user_by_email(email)
    if user is None:
        raise IdentityError(f"no user {email}")
    return user.id


@click.group("sessions")
def sessions_group() -> None:
    """List and revoke sessions."""


@sessions_group.command("list")
@config_options
@click.option("--tenant", help="Only this tenant's sessions (slug or id).")
@click.option("--user", "email", help="Only this user's sessions (email).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def sessions_list(
    config_path: Path | None,
    state_dir: Path | None,
    tenant: str | None,
    email: str | None,
    as_json: bool,
) -> None:
    """Active sessions by public id (never tokens), oldest first."""

    async def action(services: CliServices) -> list[dict[str, object]]:
        records = await services.sessions.list_sessions(
            await tenant_id_of(services, tenant), await _user_id(services, email)
        )
        return [
            {"id": r.id, "user_id": r.user_id, "tenant_id": r.tenant_id, "ip": r.ip,
             "created_at": r.created_at, "last_seen_at": r.last_seen_at}
            for r in records
        ]  # fmt: skip

    for row in run_with_services(config_path, state_dir, action):
        if as_json:
            click.echo(json.dumps(row, separators=(",", ":")))
        else:
            click.echo(f"{row['id']}  user={row['user_id']}  tenant={row['tenant_id']}")


@sessions_group.command("revoke")
@config_options
@click.argument("session_id", required=False)
@click.option("--user", "email", help="Revoke every session of this user (email).")
@click.option("--tenant", help="Revoke every session in this tenant (slug or id).")
def sessions_revoke(
    config_path: Path | None,
    state_dir: Path | None,
    session_id: str | None,
    email: str | None,
    tenant: str | None,
) -> None:
    """Revoke one session (ID), all of a user's (--user), or all of a tenant's (--tenant)."""
    if sum(x is not None for x in (session_id, email, tenant)) != 1:
        fail("give exactly one of ID, --user EMAIL or --tenant SLUG", 2)

    async def action(services: CliServices) -> list[str]:
        sessions = services.sessions
        if session_id is not None:
            done = await sessions.revoke(
                session_id, CLI_ACTOR, CLI_CONTEXT, tenant_id=None, reason="cli"
            )
            return [session_id] if done else []
        user_id = await _user_id(services, email)
        if user_id is not None:
            return await sessions.revoke_user(user_id, CLI_ACTOR, CLI_CONTEXT, reason="cli")
        tenant_id = await tenant_id_of(services, tenant)
        assert tenant_id is not None
        return await sessions.revoke_tenant(tenant_id, CLI_ACTOR, CLI_CONTEXT, reason="cli")

    ids = run_with_services(config_path, state_dir, action)
    if session_id is not None and not ids:
        fail(f"no active session {session_id}")
    click.echo(f"revoked {len(ids)} session(s)")
