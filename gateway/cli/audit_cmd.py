"""`gateway audit verify|tail|export`: the audit stream from the configured stores.

`verify` checks every hash chain and exits 1 naming each chain's first broken link; `tail`
prints events as JSON lines (and with `-f` keeps following, on any backend: it reads the
shared table); `export --tenant` writes one tenant's events, with their chain links, for
archiving or offline verification.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import click

from gateway.audit.readers import reader_for
from gateway.audit.sink import event_line
from gateway.audit.store import MAX_LIMIT, AuditQuery
from gateway.audit.stream import AuditFeed, Cursor
from gateway.audit.verify import VerifyReport, verify_all
from gateway.cli.bootstrap import run_with_services
from gateway.cli.common import config_options, fail
from gateway.cli.services import CliServices
from gateway.cli.sessions_cmd import tenant_id_of

FOLLOW_INTERVAL = 0.2


@click.group("audit")
def audit_group() -> None:
    """Read and verify the audit stream."""


def report_lines(report: VerifyReport) -> list[str]:
    """One line per chain: its head hash, or its first broken link."""
    lines = []
    for chain in report.chains:
        if chain.broken is None:
            lines.append(f"ok      chain {chain.chain}: {chain.events} events, head {chain.head}")
        else:
            b = chain.broken
            lines.append(
                f"BROKEN  chain {b.chain}: first broken link at seq {b.seq} "
                f"(event {b.event_id}): {b.reason}"
            )
    return lines


@audit_group.command("verify")
@config_options
def audit_verify(config_path: Path | None, state_dir: Path | None) -> None:
    """Check every hash chain; exit 1 and name the first broken link of each broken chain."""

    async def action(services: CliServices) -> VerifyReport:
        return await verify_all(reader_for(services.stores))

    report = run_with_services(config_path, state_dir, action)
    for line in report_lines(report):
        click.echo(line)
    if not report.ok:
        fail("the audit chain is broken (see above)")
    click.echo(f"verified {len(report.chains)} chains, {report.events} events")


async def _follow(services: CliServices, tenant_id: str | None, start: int) -> None:
    """Prints new events as they are committed until interrupted."""
    feed = AuditFeed(reader_for(services.stores), FOLLOW_INTERVAL)
    cursor = Cursor(feed.reader, tenant_id, start, 50 if services.stores.postgres else 0)
    while True:
        for event in await cursor.read():
            sys.stdout.write(event_line(event))
        sys.stdout.flush()
        await asyncio.sleep(FOLLOW_INTERVAL)


@audit_group.command("tail")
@config_options
@click.option("--tenant", help="Only this tenant's events (slug or id).")
@click.option("-n", "--lines", "count", type=click.IntRange(0, MAX_LIMIT), default=20)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events.")
def audit_tail(
    config_path: Path | None, state_dir: Path | None, tenant: str | None, count: int, follow: bool
) -> None:
    """Print the newest events as JSON lines (newest last); -f keeps following."""

    async def action(services: CliServices) -> None:
        tenant_id = await tenant_id_of(services, tenant)
        reader = reader_for(services.stores)
        events = await reader.find(AuditQuery(tenant_id=tenant_id, limit=max(count, 1)))
        events = events[-count:] if count else []
        for event in events:
            sys.stdout.write(event_line(event))
        sys.stdout.flush()
        if follow:
            start = events[-1].seq if events else await reader.last_seq()
            await _follow(services, tenant_id, start)

    with contextlib.suppress(KeyboardInterrupt):
        run_with_services(config_path, state_dir, action)


@audit_group.command("export")
@config_options
@click.option("--tenant", required=True, help="The tenant (slug or id).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None)
def audit_export(
    config_path: Path | None, state_dir: Path | None, tenant: str, output: Path | None
) -> None:
    """Write every event of one tenant's chain as JSON lines, oldest first."""

    async def action(services: CliServices) -> int:
        tenant_id = await tenant_id_of(services, tenant)
        out = output.open("w", encoding="utf-8") if output else sys.stdout
        count, after = 0, 0
        try:
            reader = reader_for(services.stores)
            while page := await reader.find(
                AuditQuery(tenant_id=tenant_id, after_seq=after, limit=MAX_LIMIT)
            ):
                out.writelines(event_line(e) for e in page)
                count, after = count + len(page), page[-1].seq
        finally:
            if output:
                out.close()
        return count

    count = run_with_services(config_path, state_dir, action)
    click.echo(f"exported {count} events", err=True)
