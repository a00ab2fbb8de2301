"""Throughput of the gateway on a public route, next to a bare upstream and nginx, in one run.

    .venv/bin/python bench/throughput.py [--duration 8] [--connections 32] [--out FILE.json]

Starts, on 127.0.0.1 only:

1. ``bench/upstream.py`` (a raw asyncio HTTP server answering 256 bytes, on uvloop if installed);
2. nginx as a plain reverse proxy to it (``worker_processes 1``, upstream keep-alive, no access
   log), only when ``nginx`` is installed; otherwise that row is skipped with a note;
3. the real gateway (``python -m gateway serve --config ...``) with a temporary state directory and
   the upstream's ``/public/*`` as a public path, logging at ``warning``, metrics on a free port.

Each target gets a short warm-up, then one measurement with ``wrk -t1 -cN -dDs --latency`` when
``wrk`` is installed, else with the built-in Python load generator (aiohttp client, N workers,
keep-alive). Prints a table (req/s, p50, p99) with the ratios gateway/upstream and gateway/nginx,
and writes everything to a JSON file under ``bench/results/`` (gitignored).

Every child runs in its own process group and is stopped (SIGTERM, then SIGKILL) on exit, on
errors and on Ctrl+C. Nothing is installed here: bench/README.md says how to get wrk and nginx.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
NGINX_TEMPLATE = BENCH_DIR / "nginx.conf.template"
UPSTREAM_SCRIPT = BENCH_DIR / "upstream.py"
HOST = "127.0.0.1"
BENCH_PATH = "/public/bench"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

# --------------------------------------------------------------------------------------------
# Results and percentiles


@dataclasses.dataclass
class LoadResult:
    """One measurement of one target. Latencies are in milliseconds."""

    tool: str
    url: str
    connections: int
    seconds: float
    requests: int  # responses received, whatever their status
    non_2xx: int
    errors: int  # connection errors and timeouts (no response)
    rps: float
    p50_ms: float
    p99_ms: float
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q ≤ 100) of values sorted ascending; NaN if empty.

    The smallest value with at least q% of the values ≤ it: for 1..100, p50 is 50 and p99 is 99.
    """
    if not 0 < q <= 100:
        raise ValueError("q must be in (0, 100]")
    if not sorted_values:
        return math.nan
    rank = math.ceil(q / 100 * len(sorted_values))
    return float(sorted_values[max(rank, 1) - 1])


# --------------------------------------------------------------------------------------------
# The built-in Python load generator


async def python_load(
    url: str,
    *,
    duration: float,
    connections: int,
    request_timeout: float = 10.0,
    keep_samples: bool = False,
) -> LoadResult:
    """GETs `url` from `connections` concurrent keep-alive workers for `duration` seconds.

    Each worker sends its next request as soon as the previous answer is read; requests
    started before the deadline are completed and counted. Latency is recorded per response
    (any status); failures without a response count as errors. With `keep_samples`, the raw
    latencies (ms, in completion order) are in ``extra["samples_ms"]``.
    """
    if connections < 1 or duration <= 0:
        raise ValueError("connections ≥ 1 and duration > 0 are required")
    latencies_ns: list[int] = []
    statuses: dict[int, int] = {}
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    timeout = aiohttp.ClientTimeout(total=request_timeout)
    clock = time.perf_counter_ns
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False, trust_env=False
    ) as session:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + duration

        async def worker() -> None:
            nonlocal errors
            while loop.time() < deadline:
                t0 = clock()
                try:
                    async with session.get(url, allow_redirects=False) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, OSError, TimeoutError):
                    errors += 1
                    await asyncio.sleep(0.01)  # a refused connection must not spin
                    continue
                latencies_ns.append(clock() - t0)
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = loop.time() - started
    ordered = sorted(latencies_ns)
    requests = len(latencies_ns)
    extra: dict[str, Any] = {"statuses": {str(k): v for k, v in sorted(statuses.items())}}
    if keep_samples:
        extra["samples_ms"] = [ns / 1e6 for ns in latencies_ns]
    return LoadResult(
        tool="python",
        url=url,
        connections=connections,
        seconds=elapsed,
        requests=requests,
        non_2xx=sum(n for code, n in statuses.items() if not 200 <= code < 300),
        errors=errors,
        rps=requests / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(ordered, 50) / 1e6,
        p99_ms=percentile(ordered, 99) / 1e6,
        extra=extra,
    )


def run_python_load(url: str, *, duration: float, connections: int) -> LoadResult:
    """`python_load` on a fresh event loop (uvloop when installed)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(python_load(url, duration=duration, connections=connections))


# --------------------------------------------------------------------------------------------
# wrk

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_DURATION = re.compile(r"^([\d.]+)(us|ms|s|m|h)$")


def _wrk_ms(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return round(float(match.group(1)) * _UNITS_MS[match.group(2)], 6)


def parse_wrk(output: str) -> dict[str, Any]:
    """req/s, latency percentiles (ms), request count, non-2xx and socket errors from wrk text."""
    parsed: dict[str, Any] = {"percentiles_ms": {}, "non_2xx": 0, "errors": 0}
    for line in output.splitlines():
        line = line.strip()
        if match := re.match(r"^(\d+(?:\.\d+)?)%\s+(\S+)$", line):
            parsed["percentiles_ms"][match.group(1)] = _wrk_ms(match.group(2))
        elif match := re.match(r"^Requests/sec:\s+([\d.]+)", line):
            parsed["rps"] = float(match.group(1))
        elif match := re.match(r"^(\d+) requests in ([\d.]+\w+),", line):
            parsed["requests"] = int(match.group(1))
            parsed["seconds"] = _wrk_ms(match.group(2)) / 1e3
        elif match := re.match(r"^Non-2xx or 3xx responses:\s+(\d+)", line):
            parsed["non_2xx"] = int(match.group(1))
        elif line.startswith("Socket errors:"):
            parsed["errors"] = sum(int(n) for n in re.findall(r"\d+", line))
            parsed["socket_errors"] = line.removeprefix("Socket errors:").strip()
    missing = {"rps", "requests"} - parsed.keys()
    if missing or not {"50", "99"} <= parsed["percentiles_ms"].keys():
        raise ValueError(f"could not parse wrk output (missing {sorted(missing)}):\n{output}")
    return parsed


def run_wrk(
    wrk: str, url: str, *, duration: float, connections: int, headers: Sequence[str] = ()
) -> LoadResult:
    """One wrk run (`-t1`); `headers` are `Name: value` lines sent with every request."""
    seconds = max(1, round(duration))
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    for header in headers:
        cmd += ["-H", header]
    cmd.append(url)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr or done.stdout}")
    parsed = parse_wrk(done.stdout)
    pct = parsed["percentiles_ms"]
    return LoadResult(
        tool="wrk",
        url=url,
        connections=connections,
        seconds=parsed.get("seconds", float(seconds)),
        requests=parsed["requests"],
        non_2xx=parsed["non_2xx"],
        errors=parsed["errors"],
        rps=parsed["rps"],
        p50_ms=pct["50"],
        p99_ms=pct["99"],
        extra={"percentiles_ms": pct, "socket_errors": parsed.get("socket_errors", "")},
    )


# --------------------------------------------------------------------------------------------
# Child processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Child:
    """A process started in its own process group, logging to a file, stopped as a group."""

    def __init__(self, name: str, cmd: Sequence[str], workdir: Path, **kwargs: Any) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl+C reaches us only; we stop children in order
                **kwargs,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def logs(self, limit: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-limit:]
        return ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}:\n{self.logs()}".rstrip()
            )

    def stop(self) -> None:
        """SIGTERM to the child's process group, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT)
        # Also reap anything left in the group (e.g. an nginx worker whose master died).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(STOP_TIMEOUT)


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group `pgid` (Linux)."""
    user, system = group_cpu_split(pgid)
    return user + system


def group_cpu_split(pgid: int) -> tuple[float, float]:
    """User and system CPU seconds, apart, of every live process in group `pgid` (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    user = system = 0
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # fields[0] is state (field 3); pgrp is field 5, utime 14, stime 15.
        if int(fields[2]) == pgid:
            user += int(fields[11])
            system += int(fields[12])
    return user / ticks, system / ticks


def _http_status(url: str, timeout: float = 2.0) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(url, timeout=timeout) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def wait_http(child: Child, url: str, timeout: float = READY_TIMEOUT) -> int:
    """Polls `url` until it answers any HTTP status; fails early if the child exits."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    last: BaseException | None = None
    while time.monotonic() < deadline:
        child.check_alive()
        try:
            return _http_status(url)
        except (OSError, urllib.error.URLError) as exc:
            last = exc
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
    raise TimeoutError(f"{child.name}: {url} did not answer within {timeout:.0f}s ({last!r})")


def start_upstream(workdir: Path) -> tuple[Child, str]:
    port = free_port()
    cmd = [sys.executable, str(UPSTREAM_SCRIPT), "--host", HOST, "--port", str(port)]
    child = Child("upstream", cmd, workdir)
    url = f"http://{HOST}:{port}"
    wait_http(child, url + "/")
    return child, url


def find_nginx() -> str | None:
    """`nginx` on PATH, or in /usr/sbin (not always on a non-root PATH)."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def render_nginx_conf(template: str, **values: str | int) -> str:
    """Replaces ``{{name}}`` placeholders (nginx's own `$variables` are left alone)."""
    text = template
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    if leftover := re.findall(r"\{\{\w+\}\}", text):
        raise ValueError(f"unfilled placeholders in the nginx template: {leftover}")
    return text


def start_nginx(nginx: str, workdir: Path, upstream_port: int) -> tuple[Child, str]:
    ngdir = workdir / "nginx"
    ngdir.mkdir()
    # nginx workers run as `nobody` when started by root; let them reach the temp paths.
    for path in (workdir, ngdir):
        path.chmod(0o755)
    port = free_port()
    conf = ngdir / "nginx.conf"
    conf.write_text(
        render_nginx_conf(
            NGINX_TEMPLATE.read_text(),
            workdir=ngdir,
            upstream_port=upstream_port,
            listen_port=port,
        )
    )
    cmd = [nginx, "-p", str(ngdir), "-e", str(ngdir / "error.log"), "-c", str(conf)]
    cmd += ["-g", "daemon off;"]
    child = Child("nginx", cmd, workdir)
    url = f"http://{HOST}:{port}"
    wait_http(child, url + "/")
    return child, url


def gateway_config(workdir: Path, upstream_url: str) -> dict[str, Any]:
    return {
        "listen": f"{HOST}:{free_port()}",
        "state_dir": str(workdir / "gateway-state"),
        "metrics": {"listen": f"{HOST}:{free_port()}"},
        "cookie": {"secure": False},
        "logging": {"level": "warning"},
        "upstreams": [{"name": "bench", "url": upstream_url, "public_paths": ["/public/*"]}],
    }


def start_gateway(workdir: Path, upstream_url: str) -> tuple[Child, str]:
    import yaml

    config = gateway_config(workdir, upstream_url)
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(path)]
    child = Child("gateway", cmd, workdir, cwd=workdir, env=env)
    url = f"http://{config['listen']}"
    wait_http(child, url + "/.gateway/healthz")
    return child, url


# --------------------------------------------------------------------------------------------
# The run


@dataclasses.dataclass
class Target:
    name: str
    description: str
    url: str


def measure(
    target: Target,
    *,
    wrk: str | None,
    duration: float,
    connections: int,
    warmup: float,
    all_children: Sequence[Child],
) -> dict[str, Any]:
    url = target.url + BENCH_PATH

    def load(seconds: float) -> LoadResult:
        if wrk:
            return run_wrk(wrk, url, duration=seconds, connections=connections)
        return run_python_load(url, duration=seconds, connections=connections)

    if warmup > 0:
        load(warmup)
    cpu_before = {c.name: group_cpu_seconds(c.pid) for c in all_children}
    result = load(duration)
    cpu_after = {c.name: group_cpu_seconds(c.pid) for c in all_children}
    for child in all_children:
        child.check_alive()
    cpu_ms_per_req = {
        name: round((cpu_after[name] - cpu_before[name]) * 1e3 / max(result.requests, 1), 4)
        for name in cpu_before
    }
    row = {"target": target.name, "description": target.description, **result.to_json()}
    row["server_cpu_ms_per_request"] = cpu_ms_per_req
    if result.requests == 0:
        raise RuntimeError(f"{target.name}: no responses at all ({result.extra})")
    if result.non_2xx or result.errors:
        print(
            f"  WARNING {target.name}: {result.non_2xx} non-2xx responses, "
            f"{result.errors} errors; the figures are not a clean 200 path",
            file=sys.stderr,
        )
    return row


def summarize(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per target, in first-seen order: the round with the median req/s.

    With an even number of rounds the lower middle one is taken, so a row is always a real
    measurement (its p50/p99 belong to the same run as its req/s).
    """
    by_target: dict[str, list[dict[str, Any]]] = {}
    for row in rounds:
        by_target.setdefault(row["target"], []).append(row)
    out = []
    for runs in by_target.values():
        ordered = sorted(runs, key=lambda r: r["rps"])
        chosen = dict(ordered[(len(ordered) - 1) // 2])
        chosen.pop("round", None)
        if len(runs) > 1:
            chosen["rps_all_rounds"] = [round(r["rps"], 1) for r in runs]
        out.append(chosen)
    return out


def ratios(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    gateway = rows.get("gateway")
    if gateway is None:
        return out
    for other in ("upstream", "nginx"):
        base = rows.get(other)
        if base is None:
            continue
        out[f"gateway/{other}"] = {
            "rps": round(gateway["rps"] / base["rps"], 4),
            "p50": round(gateway["p50_ms"] / base["p50_ms"], 3),
            "p99": round(gateway["p99_ms"] / base["p99_ms"], 3),
        }
    return out


def format_table(rows: list[dict[str, Any]], skipped: dict[str, str]) -> str:
    lines = [
        f"{'target':<10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'errors':>7}",
        "-" * 56,
    ]
    for row in rows:
        lines.append(
            f"{row['target']:<10} {row['rps']:>10,.0f} {row['p50_ms']:>8.2f} "
            f"{row['p99_ms']:>8.2f} {row['non_2xx']:>8} {row['errors']:>7}"
        )
    for name, why in skipped.items():
        lines.append(f"{name:<10} {'skipped':>10}  ({why})")
    return "\n".join(lines)


def format_ratios(found: dict[str, dict[str, float]]) -> str:
    return "\n".join(
        f"{name}: req/s x{r['rps']:.3f} ({r['rps']:.1%}), p50 x{r['p50']:.2f}, p99 x{r['p99']:.2f}"
        for name, r in found.items()
    )


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turns SIGTERM into KeyboardInterrupt so `finally` blocks stop the children."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> dict[str, Any]:
    wrk = None if args.loadgen == "python" else shutil.which("wrk")
    if args.loadgen == "wrk" and wrk is None:
        raise SystemExit("--loadgen wrk: wrk is not installed (apt-get install -y wrk)")
    if wrk is None and args.loadgen == "auto":
        print("note: wrk not found; using the built-in Python load generator", file=sys.stderr)
    nginx = find_nginx()
    if importlib.util.find_spec("gateway") is None:
        raise SystemExit(f"the gateway package is not importable by {sys.executable}")
    skipped: dict[str, str] = {}
    rounds: list[dict[str, Any]] = []
    children: list[Child] = []
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        workdir = Path(tmp)
        try:
            upstream, upstream_url = start_upstream(workdir)
            children.append(upstream)
            upstream_port = int(upstream_url.rsplit(":", 1)[1])
            targets = [
                Target("upstream", "bench/upstream.py directly", upstream_url),
            ]
            if nginx is None:
                why = "nginx not installed (apt-get install -y nginx)"
                skipped["nginx"] = why
                print(f"note: {why}; skipping the nginx row", file=sys.stderr)
            else:
                ng, ng_url = start_nginx(nginx, workdir, upstream_port)
                children.append(ng)
                targets.append(Target("nginx", "nginx (1 worker) -> upstream", ng_url))
            gw, gw_url = start_gateway(workdir, upstream_url)
            children.append(gw)
            targets.append(
                Target("gateway", f"gateway public route {BENCH_PATH} -> upstream", gw_url)
            )
            tool = "wrk" if wrk else "python"
            print(
                f"load: {tool}, {args.connections} connections, {args.duration:g}s per target "
                f"(+{args.warmup:g}s warm-up), GET {BENCH_PATH}",
                file=sys.stderr,
            )
            for round_no in range(1, args.rounds + 1):
                for target in targets:
                    shown = f" round {round_no}/{args.rounds}" if args.rounds > 1 else ""
                    print(f"measuring {target.name}{shown} ({target.url}) ...", file=sys.stderr)
                    row = measure(
                        target,
                        wrk=wrk,
                        duration=args.duration,
                        connections=args.connections,
                        warmup=args.warmup,
                        all_children=children,
                    )
                    rounds.append({"round": round_no, **row})
        finally:
            for child in reversed(children):
                child.stop()
    rows = summarize(rounds)
    by_name = {row["target"]: row for row in rows}
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine_info(load_before),
        "settings": {
            "loadgen": "wrk" if wrk else "python",
            "wrk": _version([wrk, "-v"]) if wrk else None,
            "nginx": _version([nginx, "-v"]) if nginx else None,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "rounds": args.rounds,
            "path": BENCH_PATH,
        },
        "results": rows,
        "rounds": rounds if args.rounds > 1 else [],
        "skipped": skipped,
        "ratios": ratios(by_name),
    }


def _git(*args: str) -> str | None:
    """Read-only git output about the checkout the gateway runs from, or None."""
    git = shutil.which("git")
    if git is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            [git, "-C", str(BENCH_DIR.parent), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if done.returncode == 0:
            return done.stdout.strip()
    return None


def _version(cmd: list[str]) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        text = (done.stdout + done.stderr).strip().splitlines()
        return text[0] if text else None
    return None


def machine_info(load_before: Sequence[float]) -> dict[str, Any]:
    """What a report records about where it ran: CPUs, platform, Python, the gateway's commit
    (and how many of its files were uncommitted), and the load average before the run."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gateway_commit": _git("rev-parse", "--short", "HEAD"),
        "gateway_uncommitted_files": len(
            (_git("status", "--porcelain", "gateway") or "").splitlines()
        ),
        "loadavg_before": [round(x, 2) for x in load_before],
    }


def run_and_save(
    run: Callable[[argparse.Namespace], dict[str, Any]], args: argparse.Namespace, name: str
) -> tuple[int, dict[str, Any] | None, Path | None]:
    """Runs one benchmark, stopping every child on Ctrl+C/SIGTERM or an error, and writes
    its JSON report (to `args.out`, else `bench/results/<name>-<time>.json`).

    Returns (exit code, report, path); the report and path are None when the run failed.
    """
    try:
        with sigterm_as_interrupt():
            report = run(args)
    except KeyboardInterrupt:
        print("interrupted; every child process was stopped", file=sys.stderr)
        return 130, None, None
    except (RuntimeError, TimeoutError, ValueError, OSError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1, None, None
    out = args.out
    if out is None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = RESULTS_DIR / f"{name}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0, report, out


def add_load_arguments(parser: argparse.ArgumentParser, *, rounds: int) -> None:
    """The load options every wrk-driven harness takes (`--duration` … `--out`)."""
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per row (8)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (32)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per row (1)")
    parser.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="auto: wrk when installed, else the built-in Python generator",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=rounds,
        help=f"measure every row this many times, interleaved; report the median ({rounds})",
    )
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/<time>.json)")


def check_load_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses load options outside their ranges (one line, exit 2)."""
    if not 0 < args.duration <= 600 or not 1 <= args.connections <= 10_000:
        parser.error("--duration must be in (0, 600] and --connections in [1, 10000]")
    if not 0 <= args.warmup <= 60 or not 1 <= args.rounds <= 20:
        parser.error("--warmup must be in [0, 60] and --rounds in [1, 20]")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Throughput: bare upstream vs nginx vs the gateway (public route), one run."
    )
    add_load_arguments(parser, rounds=1)
    args = parser.parse_args(argv)
    check_load_arguments(parser, args)
    code, report, out = run_and_save(run, args, "throughput")
    if report is None:
        return code
    print()
    print(format_table(report["results"], report["skipped"]))
    print()
    print(format_ratios(report["ratios"]) or "(no ratios: a row is missing)")
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
