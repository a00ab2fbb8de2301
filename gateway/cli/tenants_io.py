"""`gateway tenants export SLUG` and `gateway tenants import FILE`.

One JSON document per tenant: users (with password hashes), memberships, pending invitations,
service accounts and API keys (hashes), settings, stored rules, secrets (still encrypted) and
the tenant's audit chain. See `gateway.storage.tenant_io` for its exact content. The document
is SENSITIVE: `--output` creates a new file with mode 0600.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from gateway.audit.events import CLI_CONTEXT, AuditEvent
from gateway.cli.bootstrap import CLI_ACTOR, run_with_services, tenants_group
from gateway.cli.common import config_options, fail
from gateway.cli.services import CliServices
from gateway.storage.tenant_io import (
    Document,
    TenantIOError,
    export_tenant,
    import_tenant,
    summary,
)


def _counts(doc: Document) -> str:
    return ", ".join(f"{n} {key}" for key, n in summary(doc).items())


def _write_private(path: Path, text: str) -> None:
    """Writes a NEW file readable by its owner only (the export holds password hashes)."""
    # SECURITY: O_EXCL never follows or reuses an existing file; 0600 from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


@tenants_group.command("export")
@config_options
@click.argument("slug")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to FILE (a new file, mode 0600) instead of standard output.",
)
def tenants_export(
    config_path: Path | None, state_dir: Path | None, slug: str, output: Path | None
) -> None:
    """Export tenant SLUG as one JSON document (SENSITIVE: it holds password hashes).

    Users who are members, memberships, pending invitations, service accounts, API keys,
    settings, stored rules, secrets (still encrypted) and the tenant's audit chain.
    """
    if output is not None and output.exists():
        fail(f"{output} exists: choose a new file name")

    async def action(services: CliServices) -> Document:
        try:
            doc = await export_tenant(services.stores, slug)
        except TenantIOError as exc:
            fail(str(exc))
        tenant_id = doc["tenant"]["id"]
        event = AuditEvent(
            "tenant.export", CLI_ACTOR, tenant_id=tenant_id, target=tenant_id,
            context=CLI_CONTEXT, details={"slug": slug, **summary(doc)},
        )  # fmt: skip
        await services.stores.identity.append_audit(event)
        return doc

    doc = run_with_services(config_path, state_dir, action)
    text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        try:
            _write_private(output, text)
        except FileExistsError:
            fail(f"{output} exists: choose a new file name")
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
    click.echo(f"exported tenant {slug}: {_counts(doc)}", err=True)


def _read_document(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}")
    except json.JSONDecodeError as exc:
        fail(f"{file} is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})")


@tenants_group.command("import")
@config_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def tenants_import(config_path: Path | None, state_dir: Path | None, file: Path) -> None:
    """Import a tenant from FILE (written by `gateway tenants export`), keeping its ids.

    All or nothing, in one transaction: refused when the tenant (id or slug), one of its
    users (id or email) or any of its rows already exists here.
    """
    raw = _read_document(file)

    async def action(services: CliServices) -> Document:
        try:
            return await import_tenant(services.stores, raw, CLI_ACTOR, CLI_CONTEXT)
        except TenantIOError as exc:
            fail(str(exc))

    doc = run_with_services(config_path, state_dir, action)
    tenant = doc["tenant"]
    click.echo(f"imported tenant {tenant['slug']} ({tenant['id']}): {_counts(doc)}")
