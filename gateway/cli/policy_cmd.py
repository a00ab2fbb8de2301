"""`gateway policy lint|check|test`: the policy author's tools."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli.bootstrap import run_with_services
from gateway.cli.common import config_options, fail, read_config
from gateway.cli.services import CliServices
from gateway.pipeline.paths import PathRejected, normalize_path
from gateway.policy.cases import run_cases
from gateway.policy.defaults import policy_paths
from gateway.policy.engine import PolicyEngine
from gateway.policy.tooling import check as explain
from gateway.policy.tooling import lint as lint_files


@click.group("policy")
def policy_group() -> None:
    """Lint, check and test the Casbin policy."""


@policy_group.command("lint")
@config_options
def lint(config_path: Path | None, state_dir: Path | None) -> None:
    """Report every problem in the model and the rules file (non-zero exit if any)."""
    model, rules = policy_paths(read_config(config_path, state_dir).policy)
    problems = lint_files(model, rules)
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise SystemExit(1)
    click.echo(f"{model} and {rules}: no problems")


async def _subject(services: CliServices, who: str, tenant_id: str) -> tuple[str, tuple[str, ...]]:
    """The subject id and its roles in the tenant: a user (email or id) or a service account."""
    identity = services.identity
    user = await identity.user_by_email(who) if "@" in who else await identity.user_by_id(who)
    if user is not None:
        return user.id, await identity.membership_roles(tenant_id, user.id) or ()
    for account in await identity.service_accounts(tenant_id):
        if who in (account.id, account.name):
            return account.id, account.roles
    fail(f"no user or service account {who!r} in that tenant")


@policy_group.command("check")
@config_options
@click.argument("sub")
@click.argument("tenant")
@click.argument("path")
@click.argument("method")
def check(
    config_path: Path | None, state_dir: Path | None, sub: str, tenant: str, path: str, method: str
) -> None:
    """Print allow/deny for SUB (email or id) in TENANT on METHOD PATH, and the deciding rule."""
    config = read_config(config_path, state_dir)
    try:
        normalized = normalize_path(path)
    except PathRejected as exc:
        fail(f"the path would be refused before any decision ({exc.reason})")

    async def action(services: CliServices) -> tuple[bool, str]:
        identity = services.identity
        found = await identity.tenant_by_slug(tenant) or await identity.tenant_by_id(tenant)
        if found is None:
            fail(f"unknown tenant {tenant!r}")
        subject, roles = await _subject(services, sub, found.id)
        model, rules = policy_paths(config.policy)
        engine = PolicyEngine.from_files(model, rules, store=services.stores.rules, freeze_gc=False)
        await engine.ensure_tenant(found.id)
        decision, text = explain(engine, subject, roles, found.id, normalized, method.upper())
        return decision.allow, text

    allowed, text = run_with_services(config_path, state_dir, action)
    click.echo(text)
    raise SystemExit(0 if allowed else 2)


@policy_group.command("test")
@config_options
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def test(config_path: Path | None, state_dir: Path | None, directory: Path | None) -> None:
    """Run the YAML decision tables in DIRECTORY (default policy/tests); non-zero on mismatch."""
    model, rules = policy_paths(read_config(config_path, state_dir).policy)
    directory = directory or Path("policy/tests")
    if not directory.is_dir():
        fail(f"{directory} is not a directory of *.yaml cases")
    results = run_cases(directory, model, rules)
    for result in results:
        click.echo(str(result), err=True)
    if results:
        raise SystemExit(1)
    count = len(list(directory.glob("*.yaml")))
    click.echo(f"all cases passed ({count} files)")
