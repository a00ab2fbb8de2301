"""The `gateway` command as a user runs it: help, config check, zero-config start, migrate, demo."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import aiohttp
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.scaleout_helpers import poll
from tests.support.gateway_proc import gateway_command, run_cli, run_gateway, stop_process
from tests.support.net import free_port, wait_for_http
from tests.support.upstream import EchoUpstream

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "args", [(), ("serve",), ("demo",), ("migrate",), ("config",), ("config", "check")]
)
async def test_help_everywhere(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, out, err = await run_cli(*args, "--help", cwd=tmp_path)
    assert code == 0, err
    assert "Usage:" in out


async def test_config_check_reports_every_problem_at_once(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "listen: nowhere\n"
        "database_url: mysql://admin:hunter2-secret@db/x\n"
        "cookie: {idle_timeout: 5}\n"
        "upstreams:\n  - {name: app, url: ftp://x}\n"
        "unknown_key: 1\n"
    )
    code, out, err = await run_cli("config", "check", str(config), cwd=tmp_path)
    assert code != 0
    assert out == ""
    for key in ("listen", "database_url", "cookie.idle_timeout", "upstreams[0].url", "unknown_key"):
        assert key in err, f"{key} not reported:\n{err}"
    assert "hunter2-secret" not in err + out


async def test_config_check_accepts_the_example(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "gateway.example.yaml"
    code, out, err = await run_cli("config", "check", str(example), cwd=tmp_path)
    assert code == 0, err
    assert "valid" in out


async def test_serve_with_a_bad_config_fails_with_clear_lines(tmp_path: Path) -> None:
    code, _, err = await run_cli(
        "serve",
        "--upstream",
        "http://127.0.0.1:1",
        cwd=tmp_path,
        env={"GATEWAY_COOKIE__LIFETIME": "ten"},
    )
    assert code != 0
    assert "cookie.lifetime" in err
    assert "Traceback" not in err


async def test_serve_without_upstream_warns_and_serves_forward_auth(tmp_path: Path) -> None:
    async with run_gateway(tmp_path, None) as gw:
        async with aiohttp.ClientSession() as http, http.get(f"{gw.url}/anything") as r:
            assert r.status == 404
        assert "--upstream" in gw.logs()


async def test_zero_config_start_creates_private_state(
    tmp_path: Path, echo_upstream: EchoUpstream
) -> None:
    async with (
        run_gateway(tmp_path, None, args=("--upstream", echo_upstream.url)) as gw,
        aiohttp.ClientSession() as http,
        http.get(f"{gw.url}/anything") as r,
    ):
        assert r.status == 401  # protected by default
    state = tmp_path / ".gateway"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    key_files = [state / "master.key", *sorted((state / "signing").glob("*.pem"))]
    assert len(key_files) >= 2
    for path in key_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((state / "gateway.db").stat().st_mode) == 0o600


async def test_start_refuses_a_key_file_readable_by_others(
    tmp_path: Path, echo_upstream: EchoUpstream
) -> None:
    code, _, _ = await run_cli("migrate", cwd=tmp_path)
    assert code == 0
    os.chmod(tmp_path / ".gateway" / "master.key", 0o644)
    code, _, err = await run_cli("serve", "--upstream", echo_upstream.url, cwd=tmp_path)
    assert code != 0
    assert "master.key" in err and "0600" in err


async def test_migrate_twice_is_harmless(tmp_path: Path) -> None:
    code, out, err = await run_cli("migrate", cwd=tmp_path)
    assert code == 0, err
    assert "applied 0001_meta" in out
    code, out, err = await run_cli("migrate", cwd=tmp_path)
    assert code == 0, err
    assert "up to date" in out


async def test_listen_conflict_is_one_line(tmp_path: Path, echo_upstream: EchoUpstream) -> None:
    code, _, err = await run_cli(
        "serve",
        "--upstream",
        echo_upstream.url,
        "--listen",
        f"127.0.0.1:{echo_upstream.port}",
        cwd=tmp_path,
    )
    assert code != 0
    assert "cannot listen" in err
    assert "Traceback" not in err


async def test_demo_serves_a_page_through_the_proxy(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *gateway_command("demo", "--listen", f"127.0.0.1:{port}"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
    )
    try:
        await wait_for_http(f"http://127.0.0.1:{port}/.gateway/healthz", 20)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/public/", headers={"Accept": "text/html"}) as r,
        ):
            assert r.status == 200
            assert "Demo upstream" in await r.text()
    finally:
        code = await stop_process(proc)
    assert proc.stdout is not None
    output = (await proc.stdout.read()).decode()
    assert f"http://127.0.0.1:{port}/" in output
    assert code == 0


async def test_workers_share_one_port(tmp_path: Path, echo_upstream: EchoUpstream) -> None:
    async with run_gateway(
        tmp_path, None, args=("--upstream", echo_upstream.url, "--workers", "2")
    ) as gw:
        children = psutil.Process(gw.proc.pid).children()
        workers = [p for p in children if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2
        async with aiohttp.ClientSession() as http:
            for _ in range(20):
                async with http.get(f"{gw.url}/.gateway/healthz") as r:
                    assert r.status == 200
    assert gw.proc.returncode == 0
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers)


async def test_any_worker_answers_a_scrape_with_every_workers_counts(
    tmp_path: Path, echo_upstream: EchoUpstream
) -> None:
    """`--workers 2`: requests spread over both workers (a new connection each) are all in
    the scrape, whichever worker answers it, at most a second late (the tallies' flush)."""
    requests = 40
    async with run_gateway(
        tmp_path, None, args=("--upstream", echo_upstream.url, "--workers", "2")
    ) as gw:
        fresh = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=fresh) as http:
            for _ in range(requests):  # no session: each is refused with 401 by some worker
                async with http.get(f"{gw.url}/app") as r:
                    assert r.status == 401

            async def refused_in_scrape() -> float:
                async with http.get(f"http://127.0.0.1:{gw.metrics_port}/metrics") as r:
                    text = await r.text()
                return sum(
                    s.value
                    for family in text_string_to_metric_families(text)
                    for s in family.samples
                    if s.name == "gateway_http_requests_total" and s.labels["status"] == "401"
                )

            counted, _ = await poll(refused_in_scrape, lambda n: n >= requests, timeout=10)
            assert counted == requests
            assert await refused_in_scrape() == requests  # and no scrape adds any more
