"""The PostgreSQL schema lifecycle through the real command line.

CONTRACT "Embedded default and scale-out": on PostgreSQL `gateway serve` refuses a schema
older than the code with a message naming `gateway migrate` (unless `auto_migrate: true`);
`gateway migrate` creates or upgrades the schema and running it twice is harmless. Errors go
to stderr as one clear line and a non-zero exit, never echoing a secret.

Every test uses a private PostgreSQL server (a fresh cluster), never the shared one.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml

from tests.support.gateway_proc import base_config, run_cli, run_gateway
from tests.support.net import free_port
from tests.support.services import ServerHandle, with_database
from tests.support.upstream import run_echo_upstream

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio, pytest.mark.timeout(120)]

PrivateServer = Callable[[], AbstractAsyncContextManager[ServerHandle]]
SERVE_TIMEOUT = 60.0  # seconds for one command (generous: CI machines can be busy)


def write_config(workdir: Path, config: dict[str, Any]) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def cli(workdir: Path, config_path: Path, *args: str) -> tuple[int, str, str]:
    return await run_cli(*args, "--config", str(config_path), cwd=workdir, timeout=SERVE_TIMEOUT)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


async def create_database(server_url: str, name: str) -> str:
    """A new empty database on the private server; its URL."""
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def readyz(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/.gateway/readyz") as resp:
        return resp.status, json.loads(await resp.read())


async def test_serve_refuses_an_unmigrated_database_until_gateway_migrate(
    tmp_path: Path, private_postgres: PrivateServer
) -> None:
    async with private_postgres() as pg, run_echo_upstream() as upstream:
        config = base_config(upstream.url, tmp_path, database_url=pg.url)
        path = write_config(tmp_path, config)

        # A fresh database: serve exits non-zero with one line naming `gateway migrate`.
        code, out, err = await cli(tmp_path, path, "serve")
        assert code != 0, (out, err)
        lines = error_lines(err)
        assert len(lines) == 1, err
        assert "gateway migrate" in lines[0], err
        assert "Traceback" not in err + out

        # migrate applies the schema; a second run is harmless and says so.
        code, out, err = await cli(tmp_path, path, "migrate")
        assert code == 0, (out, err)
        assert "applied" in out, out
        code, again, err = await cli(tmp_path, path, "migrate")
        assert code == 0, (again, err)
        assert "up to date" in again, again

        # Now serve starts and is ready.
        async with run_gateway(tmp_path / "serve", config, ready_timeout=SERVE_TIMEOUT) as gw:
            status, body = await readyz(gw.url)
            assert status == 200, body
            assert body["checks"]["database"] == "ok", body


async def test_auto_migrate_lets_serve_migrate_by_itself(
    tmp_path: Path, private_postgres: PrivateServer
) -> None:
    async with private_postgres() as pg, run_echo_upstream() as upstream:
        url = await create_database(pg.url, "gw_auto")
        config = base_config(upstream.url, tmp_path, database_url=url, auto_migrate=True)
        async with run_gateway(tmp_path / "serve", config, ready_timeout=SERVE_TIMEOUT) as gw:
            status, body = await readyz(gw.url)
            assert status == 200, body
        path = write_config(tmp_path, config)
        code, out, err = await cli(tmp_path, path, "migrate")
        assert code == 0, (out, err)
        assert "up to date" in out, out


async def test_concurrent_migrations_are_serialized(
    tmp_path: Path, private_postgres: PrivateServer
) -> None:
    async with private_postgres() as pg, run_echo_upstream() as upstream:
        url = await create_database(pg.url, "gw_race")
        path = write_config(tmp_path, base_config(upstream.url, tmp_path, database_url=url))
        results = await asyncio.gather(*(cli(tmp_path, path, "migrate") for _ in range(3)))
        assert all(code == 0 for code, _, _ in results), results
        # Every migration was applied exactly once, whichever run took it.
        applied = [line for _, out, _ in results for line in out.splitlines() if "applied" in line]
        assert applied and len(applied) == len(set(applied)), results
        code, out, err = await cli(tmp_path, path, "migrate")
        assert code == 0 and "up to date" in out, (out, err)


@pytest.mark.parametrize("command", ["serve", "migrate"])
async def test_an_unreachable_database_is_one_line_without_the_password(
    tmp_path: Path, command: str
) -> None:
    secret = "s3cret-Pa55word"  # a test value that must never be echoed
    url = f"postgresql://gateway:{secret}@127.0.0.1:{free_port()}/gateway"
    config = base_config("http://127.0.0.1:9", tmp_path, database_url=url)
    path = write_config(tmp_path, config)
    code, out, err = await cli(tmp_path, path, command)
    assert code != 0, (out, err)
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert secret not in err + out
    assert "Traceback" not in err + out


# --------------------------------------------------------------------------------------------
# The compose deployment (no Docker engine here: the files are checked statically)
# --------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_CONFIG = REPO / "config" / "compose.yaml"


def compose_services() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())  # resolves `<<: *anchor` merges
    assert isinstance(document, dict) and isinstance(document.get("services"), dict), document
    return document["services"]


def command_of(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """{service: condition} of `depends_on` (list form means service_started)."""
    raw = service.get("depends_on", {})
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def closure(services: dict[str, dict[str, Any]], name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        for dep in depends_on(services[todo.pop()]):
            assert dep in services, f"{name} depends on unknown service {dep}"
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def host_of(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or ""


async def test_docker_compose_runs_replicas_on_postgres_and_redis_after_a_migration(
    tmp_path: Path,
) -> None:
    services = compose_services()
    gateways = [n for n, s in services.items() if "gateway serve" in command_of(s)]
    migrators = [n for n, s in services.items() if "gateway migrate" in command_of(s)]
    assert len(gateways) >= 2, f"expected two gateway replicas, got {gateways}"
    assert len(migrators) == 1, migrators
    migrate = migrators[0]
    for name in ("postgres", "redis"):
        assert name in services and "healthcheck" in services[name], name
    assert depends_on(services[migrate]).get("postgres") == "service_healthy"
    assert services[migrate].get("restart", "no") == "no", "migrate is a one-shot job"

    for name in gateways:
        service = services[name]
        deps = depends_on(service)
        assert {migrate, "postgres", "redis"} <= closure(services, name), (name, deps)
        # Wherever migrate is waited for, it must have completed, not merely started.
        for svc in [name, *closure(services, name)]:
            condition = depends_on(services[svc]).get(migrate)
            assert condition in (None, "service_completed_successfully"), (svc, condition)
        uses = command_of(service) + " " + str(service.get("environment", {}))
        assert "/src/config/compose.yaml" in uses, (name, uses)
        assert ".:/src" in service.get("volumes", []), name
        # One key volume for every replica (same signing keys, same CSRF key).
        assert any(str(v).endswith(":/state") for v in service.get("volumes", [])), name
    ports = [p for n in gateways for p in services[n].get("ports", [])]
    assert len({str(p).split(":")[0] for p in ports}) == len(ports), ports

    # The config every replica reads is valid and points at the compose services.
    config_path = tmp_path / "compose.yaml"
    config_path.write_text(COMPOSE_CONFIG.read_text())
    code, out, err = await run_cli("config", "check", str(config_path), cwd=tmp_path)
    assert code == 0, (out, err)
    config = yaml.safe_load(COMPOSE_CONFIG.read_text())
    assert host_of(config["database_url"]) == "postgres"
    assert host_of(config["redis_url"]) == "redis"
    assert not config.get("auto_migrate", False), "the migrate service owns migrations"
    assert config["state_dir"] == "/state"
    env = services["postgres"]["environment"]
    assert config["database_url"].startswith(
        f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/"
        f"{env['POSTGRES_DB']}"
    )
    for upstream in config["upstreams"]:
        assert host_of(upstream["url"]) in services, upstream
    endpoint = (config.get("tracing") or {}).get("otlp_endpoint")
    if endpoint:
        assert host_of(endpoint) in services, endpoint

    # Debian's docker-compose parses and validates the file without a Docker engine; CI
    # installs it (.ci/run), so there a missing tool is a failure, not a skip.
    checked = 0
    for cmd in (["docker-compose"], ["docker", "compose"]):
        if shutil.which(cmd[0]) is None or await run_tool(*cmd, "version") != 0:
            continue  # not installed (or `docker` without the compose plugin)
        assert await run_tool(*cmd, "-f", str(COMPOSE_FILE), "config", "-q") == 0, cmd
        checked += 1
    if os.environ.get("GATEWAY_TEST_REQUIRE_SERVICES") == "1":
        assert checked, "docker-compose is not installed (apt-get install docker-compose)"


async def run_tool(*cmd: str) -> int:
    """Runs an external tool in the repository; its exit code (output discarded)."""
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(proc.wait(), 30)
