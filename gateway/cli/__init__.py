"""The `gateway` command: one group, one module per area of commands.

The tree (areas arrive with their issues): serve, demo, migrate, config check; tenants,
users, operators (bootstrap); policy lint|check|test; sessions list|revoke; audit
tail|verify|export; secrets put|list; keys rotate|rotate-kek.
"""

from __future__ import annotations

import click

from gateway import __version__
from gateway.cli.audit_cmd import audit_group
from gateway.cli.backup_cmd import backup, restore
from gateway.cli.bootstrap import operators_group, tenants_group, users_group
from gateway.cli.config_cmd import config_group
from gateway.cli.demo import demo
from gateway.cli.keys_cmd import keys_group
from gateway.cli.policy_cmd import policy_group
from gateway.cli.secrets_cmd import secrets_group
from gateway.cli.serve import migrate, serve
from gateway.cli.sessions_cmd import sessions_group
from gateway.cli.tenants_io import tenants_export  # noqa: F401 - registers export/import


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gateway")
def main() -> None:
    """gateway: an authorization and identity sidecar for apps in any language."""


main.add_command(serve)
main.add_command(demo)
main.add_command(migrate)
main.add_command(config_group)
main.add_command(tenants_group)
main.add_command(users_group)
main.add_command(operators_group)
main.add_command(policy_group)
main.add_command(keys_group)
main.add_command(secrets_group)
main.add_command(sessions_group)
main.add_command(audit_group)
main.add_command(backup)
main.add_command(restore)
