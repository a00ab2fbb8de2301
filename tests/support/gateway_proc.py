"""Starting the real `gateway` process as a user would, for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.net import free_port, wait_for_http, wait_for_port


@dataclass
class GatewayProcess:
    """A running `gateway` child process and where to reach it."""

    proc: asyncio.subprocess.Process
    port: int
    metrics_port: int
    workdir: Path
    log_path: Path
    config_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def logs(self) -> str:
        """Everything the process wrote to stderr and stdout so far."""
        return self.log_path.read_text(errors="replace")


def gateway_command(*args: str) -> list[str]:
    """The command line of the `gateway` entry point, run with this interpreter."""
    return [sys.executable, "-m", "gateway", *args]


def base_config(upstream_url: str, workdir: Path, **extra: Any) -> dict[str, Any]:
    """A config on free ports with one upstream; `extra` keys replace top-level keys."""
    config: dict[str, Any] = {
        "listen": f"127.0.0.1:{free_port()}",
        "state_dir": str(workdir / "state"),
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
        "cookie": {"secure": False},
        "upstreams": [{"name": "app", "url": upstream_url, "public_paths": ["/public/*"]}],
    }
    config.update(extra)
    return config


@contextlib.asynccontextmanager
async def run_gateway(
    workdir: Path,
    config: Mapping[str, Any] | None = None,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 20.0,
) -> AsyncIterator[GatewayProcess]:
    """Runs `gateway serve` (with `config` written to a YAML file when given) until the block ends.

    Waits for `/.gateway/healthz`; on exit sends SIGTERM and waits for a clean shutdown.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = gateway_command("serve", *args)
    config_path = None
    if config is not None:
        config_path = workdir / "gateway.yaml"
        config_path.write_text(yaml.safe_dump(dict(config)))
        cmd += ["--config", str(config_path)]
        port = int(str(config["listen"]).rsplit(":", 1)[1])
        metrics = config.get("metrics", {}).get("listen")
        metrics_port = int(metrics.rsplit(":", 1)[1]) if metrics else 0
    else:
        port, metrics_port = free_port(), free_port()
        cmd += ["--listen", f"127.0.0.1:{port}"]
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    if config is None:
        child_env["GATEWAY_METRICS__LISTEN"] = f"127.0.0.1:{metrics_port}"
    child_env.update(env or {})
    log_path = workdir / "gateway.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=workdir, env=child_env, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
    gw = GatewayProcess(proc, port, metrics_port, workdir, log_path, config_path)
    try:
        await _wait_ready(gw, ready_timeout)
        yield gw
    finally:
        await stop_process(proc)


async def _wait_ready(gw: GatewayProcess, timeout: float) -> None:
    waiter = asyncio.ensure_future(wait_for_http(f"{gw.url}/.gateway/healthz", timeout))
    exited = asyncio.ensure_future(gw.proc.wait())
    done, _ = await asyncio.wait({waiter, exited}, return_when=asyncio.FIRST_COMPLETED)
    if exited in done:
        waiter.cancel()
        raise RuntimeError(f"gateway exited with {gw.proc.returncode}:\n{gw.logs()}")
    exited.cancel()
    waiter.result()


async def stop_process(proc: asyncio.subprocess.Process, timeout: float = 15.0) -> int:
    """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode


@contextlib.asynccontextmanager
async def serving(
    cmd: Sequence[str], port: int, env: Mapping[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Runs a server (output discarded) until the block ends, once it accepts on `port`."""
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        env=None if env is None else dict(env),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_for_port("127.0.0.1", port, 10)
        yield proc
    finally:
        await stop_process(proc)


async def run_cli(
    *args: str,
    cwd: Path,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, str, str]:
    """Runs a `gateway` command to completion; returns (exit code, stdout, stderr)."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    child_env.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        *gateway_command(*args),
        cwd=cwd,
        env=child_env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def front_handoffs(metrics_port: int) -> dict[str, int]:
    """Connections the fast front has handed to aiohttp so far, by reason (from a scrape of
    the metrics listener; exact for a one-worker gateway)."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        text = await resp.text()
    found: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "gateway_front_handoffs_total" and s.value:
                found[s.labels["reason"]] = int(s.value)
    return found
