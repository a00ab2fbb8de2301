"""`gateway demo`: the gateway in front of a built-in upstream, ready to click through."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from aiohttp import web

from gateway.cli.common import fail, read_config
from gateway.cli.services import open_cli_services
from gateway.config import GatewayConfig
from gateway.demo.seed import DemoAccount, seed_demo
from gateway.demo.upstream import build_demo_upstream
from gateway.mail.sender import build_mailer
from gateway.observability.logs import configure_logging
from gateway.runtime import install_uvloop, serve, start_site
from gateway.storage.state import StateError, open_state_dir

DEMO_STATE_DIR = Path(".gateway-demo")


def demo_overrides(listen: str, upstream_url: str) -> dict[str, object]:
    """The demo's configuration: plain HTTP on loopback, one upstream with a public area."""
    return {
        "listen": listen,
        "cookie": {"secure": False},
        "metrics": {"listen": None},
        "logging": {"format": "text"},
        "upstreams": [
            {"name": "demo", "url": upstream_url, "public_paths": ["/public/*"]},
        ],
    }


def banner(bound: str, accounts: list[DemoAccount], mail: str | None = None) -> str:
    """What to do next, printed once the gateway listens (`mail`: where mail goes)."""
    base = f"http://{bound}"
    lines = [
        f"\n  gateway demo is running: open {base}/",
        "  Sign in as (passwords are new at every start):",
        *(f"    {a.role:7} {a.email}  password: {a.password}" for a in accounts),
        f"  a public page:          {base}/public/",
        f"  your session (JSON):    {base}/.gateway/auth/session",
        f"  sign out:               {base}/.gateway/logout",
        f"  reset a password:       {base}/.gateway/reset",
        *([f"  mail (reset links):     {mail}"] if mail else []),
        "  The page behind the gateway shows every header it received.",
        "  Press Ctrl+C to stop.\n",
    ]
    return "\n".join(lines)


async def seed(config: GatewayConfig) -> list[DemoAccount]:
    """The demo tenant and users, with fresh passwords."""
    async with open_cli_services(config) as services:
        return await seed_demo(services.identity)


async def run_demo(listen: str, state_dir: Path | None) -> None:
    """Starts the demo upstream on a free loopback port, then the gateway in front of it."""
    upstream = web.AppRunner(build_demo_upstream(), access_log=None)
    _, upstream_bound = await start_site(upstream, "127.0.0.1:0", reuse_port=False)
    config = read_config(
        None, state_dir or DEMO_STATE_DIR, demo_overrides(listen, f"http://{upstream_bound}")
    )
    configure_logging(config.logging.level, "text")
    open_state_dir(config.state_dir)
    accounts = await seed(config)
    mail = build_mailer(config.mail, config.state_dir).describe()
    await serve(
        config,
        on_ready=lambda bound: click.echo(banner(bound, accounts, mail)),
        extra_cleanup=[upstream],
    )


@click.command()
@click.option(
    "--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to serve on."
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State directory for the demo (default ./.gateway-demo).",
)
def demo(listen: str, state_dir: Path | None) -> None:
    """Run the gateway with a built-in demo upstream on the embedded default."""
    install_uvloop()
    try:
        asyncio.run(run_demo(listen, state_dir))
    except StateError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot listen on {listen}: {exc.strerror or exc}")
