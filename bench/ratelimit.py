"""What a rate-limited route costs next to an unlimited one, in-process and with Redis.

    .venv/bin/python bench/ratelimit.py [--duration 8] [--connections 32] [--rounds 3]

Starts ``bench/upstream.py`` and two gateways exactly as ``bench/throughput.py`` does (its helpers
are imported, not copied), both with the upstream's ``/public/*`` and ``/limited/*`` public:

* ``inproc``: no Redis, buckets in the gateway process;
* ``redis``: ``redis_url`` set (``--redis-url``, default ``$GATEWAY_TEST_REDIS_URL`` or
  ``redis://127.0.0.1:6379/0``) with a fresh ``storage.redis_prefix`` ``gwbench:<hex>:``. The keys
  under that prefix are deleted at the end (nothing else in Redis is touched, never a flush).

Each gateway has one rule, ``bench``: ``/limited/*``, key ``[ip, route]``, ``1000000/s``, burst
``1000000``, so it is checked on every request and never refuses one. ``GET /public/bench`` is
the unlimited route (no rule applies, no store call). Four rows, interleaved per round:
``inproc/unlimited``, ``inproc/limited``, ``redis/unlimited``, ``redis/limited``, each measured
with ``wrk -t1 -cN -dDs --latency`` (or the built-in Python generator without wrk). Before
measuring, one request per row checks that the rule applies exactly where expected.

Prints a table and the ratios limited ÷ unlimited (req/s, p50, p99, gateway CPU per request)
for each mode, and writes everything to ``bench/results/ratelimit-<time>.json``. Every child runs
in its own process group and is stopped on exit, on errors, on Ctrl+C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import os
import secrets
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    from bench import throughput as tp
except ModuleNotFoundError:  # run as a script: bench/ is on sys.path, the project root is not
    import throughput as tp  # type: ignore[no-redef]

UNLIMITED_PATH = "/public/bench"
LIMITED_PATH = "/limited/bench"
RULE = {
    "name": "bench",
    "match": {"path": "/limited/*"},
    "key": ["ip", "route"],
    "rate": "1000000/s",
    "burst": 1_000_000,
}
DEFAULT_REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"


@dataclasses.dataclass
class Row:
    name: str
    mode: str
    route: str
    base_url: str
    path: str
    child: tp.Child


def gateway_config(
    workdir: Path, upstream_url: str, redis: tuple[str, str] | None
) -> dict[str, Any]:
    """`throughput.gateway_config` plus the public `/limited/*`, the rule and maybe Redis."""
    config = tp.gateway_config(workdir, upstream_url)
    config["upstreams"][0]["public_paths"] = ["/public/*", "/limited/*"]
    config["rate_limits"] = {"defaults": True, "rules": [RULE]}
    if redis is not None:
        config["redis_url"], prefix = redis
        config["storage"] = {"redis_prefix": prefix}
    return config


def start_gateway(
    name: str, workdir: Path, upstream_url: str, redis: tuple[str, str] | None
) -> tuple[tp.Child, str]:
    import yaml

    gwdir = workdir / name
    gwdir.mkdir()
    config = gateway_config(gwdir, upstream_url, redis)
    path = gwdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(path)]
    child = tp.Child(f"gateway-{name}", cmd, workdir, cwd=gwdir, env=env)
    url = f"http://{config['listen']}"
    tp.wait_http(child, url + "/.gateway/healthz")
    return child, url


def rate_policy(url: str) -> tuple[int, str | None]:
    """(status, RateLimit-Policy) of one GET, never through a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as resp:
        resp.read()
        return int(resp.status), resp.headers.get("RateLimit-Policy")


def check_rows(rows: Sequence[Row]) -> None:
    """The rule applies to the limited rows only (and lets the request through)."""
    for row in rows:
        status, policy = rate_policy(row.base_url + row.path)
        expected = row.route == "limited"
        if status != 200 or (policy is not None) != expected:
            raise RuntimeError(f"{row.name}: status {status}, RateLimit-Policy {policy!r}")


async def _redis_keys(url: str, prefix: str) -> list[bytes]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        return [k async for k in client.scan_iter(match=_glob(prefix) + "*", count=500)]
    finally:
        await client.aclose()


async def _redis_cpu(url: str) -> float:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        info = await client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        await client.aclose()


async def _delete_prefix(url: str, prefix: str) -> int:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=_glob(prefix) + "*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await client.unlink(*batch)
                batch = []
        if batch:
            deleted += await client.unlink(*batch)
    finally:
        await client.aclose()
    return deleted


def _glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def measure(
    row: Row,
    *,
    wrk: str | None,
    args: argparse.Namespace,
    children: Sequence[tp.Child],
    redis_url: str | None,
) -> dict[str, Any]:
    url = row.base_url + row.path

    def load(seconds: float) -> tp.LoadResult:
        if wrk:
            return tp.run_wrk(wrk, url, duration=seconds, connections=args.connections)
        return tp.run_python_load(url, duration=seconds, connections=args.connections)

    if args.warmup > 0:
        load(args.warmup)
    redis_before = asyncio.run(_redis_cpu(redis_url)) if redis_url else None
    gw_before = tp.group_cpu_seconds(row.child.pid)
    result = load(args.duration)
    gw_after = tp.group_cpu_seconds(row.child.pid)
    redis_after = asyncio.run(_redis_cpu(redis_url)) if redis_url else None
    for child in children:
        child.check_alive()
    if result.requests == 0:
        raise RuntimeError(f"{row.name}: no responses at all ({result.extra})")
    if result.non_2xx or result.errors:
        print(
            f"  WARNING {row.name}: {result.non_2xx} non-2xx, {result.errors} errors "
            "(the rule must never refuse; the figures are not a clean 200 path)",
            file=sys.stderr,
        )
    out = {"target": row.name, "mode": row.mode, "route": row.route, **result.to_json()}
    per_request = 1e3 / max(result.requests, 1)
    out["gateway_cpu_ms_per_request"] = round((gw_after - gw_before) * per_request, 4)
    if redis_before is not None and redis_after is not None:
        # Redis' own CPU counter: the shared server may also serve other work meanwhile.
        out["redis_cpu_ms_per_request"] = round((redis_after - redis_before) * per_request, 4)
    return out


def ratios(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """limited ÷ unlimited per mode: req/s, p50, p99 and gateway CPU per request."""
    out: dict[str, dict[str, float]] = {}
    for mode in ("inproc", "redis"):
        lim, unl = rows.get(f"{mode}/limited"), rows.get(f"{mode}/unlimited")
        if lim is None or unl is None:
            continue
        out[f"{mode}: limited/unlimited"] = {
            "rps": round(lim["rps"] / unl["rps"], 4),
            "p50": round(lim["p50_ms"] / unl["p50_ms"], 3),
            "p99": round(lim["p99_ms"] / unl["p99_ms"], 3),
            "cpu": round(
                lim["gateway_cpu_ms_per_request"] / max(unl["gateway_cpu_ms_per_request"], 1e-9),
                3,
            ),
        }
    return out


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        f"{'row':<18} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'gw CPU ms':>10} "
        f"{'redis CPU ms':>12} {'non-2xx':>8} {'errors':>7}",
        "-" * 88,
    ]
    for row in rows:
        redis_cpu = row.get("redis_cpu_ms_per_request")
        shown = f"{redis_cpu:.4f}" if redis_cpu is not None else "-"
        lines.append(
            f"{row['target']:<18} {row['rps']:>9,.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['gateway_cpu_ms_per_request']:>10.4f} {shown:>12} {row['non_2xx']:>8} "
            f"{row['errors']:>7}"
        )
    return "\n".join(lines)


def format_ratios(found: dict[str, dict[str, float]]) -> str:
    return "\n".join(
        f"{name}: req/s x{r['rps']:.3f}, p50 x{r['p50']:.2f}, p99 x{r['p99']:.2f}, "
        f"gateway CPU/request x{r['cpu']:.2f}"
        for name, r in found.items()
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    wrk = None if args.loadgen == "python" else shutil.which("wrk")
    if args.loadgen == "wrk" and wrk is None:
        raise SystemExit("--loadgen wrk: wrk is not installed (apt-get install -y wrk)")
    if wrk is None and args.loadgen == "auto":
        print("note: wrk not found; using the built-in Python load generator", file=sys.stderr)
    if importlib.util.find_spec("gateway") is None:
        raise SystemExit(f"the gateway package is not importable by {sys.executable}")
    redis_url: str | None = args.redis_url
    if redis_url:
        from redis.exceptions import RedisError

        try:
            asyncio.run(_redis_cpu(redis_url))
        except (RedisError, OSError) as exc:
            raise RuntimeError(
                f"Redis is unreachable ({type(exc).__name__}); "
                "pass --redis-url '' to skip the Redis rows"
            ) from None
    prefix = f"gwbench:{secrets.token_hex(6)}:"
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    rounds: list[dict[str, Any]] = []
    children: list[tp.Child] = []
    keys_left = None
    with tempfile.TemporaryDirectory(prefix="gateway-bench-rl-") as tmp:
        workdir = Path(tmp)
        try:
            upstream, upstream_url = tp.start_upstream(workdir)
            children.append(upstream)
            inproc, inproc_url = start_gateway("inproc", workdir, upstream_url, None)
            children.append(inproc)
            rows = [
                Row("inproc/unlimited", "inproc", "unlimited", inproc_url, UNLIMITED_PATH, inproc),
                Row("inproc/limited", "inproc", "limited", inproc_url, LIMITED_PATH, inproc),
            ]
            if redis_url:
                shared, shared_url = start_gateway(
                    "redis", workdir, upstream_url, (redis_url, prefix)
                )
                children.append(shared)
                rows += [
                    Row(
                        "redis/unlimited", "redis", "unlimited", shared_url, UNLIMITED_PATH, shared
                    ),
                    Row("redis/limited", "redis", "limited", shared_url, LIMITED_PATH, shared),
                ]
            check_rows(rows)
            tool = "wrk" if wrk else "python"
            print(
                f"load: {tool}, {args.connections} connections, {args.duration:g}s per row "
                f"(+{args.warmup:g}s warm-up), {args.rounds} round(s)",
                file=sys.stderr,
            )
            for round_no in range(1, args.rounds + 1):
                for row in rows:
                    print(f"measuring {row.name} round {round_no}/{args.rounds}", file=sys.stderr)
                    measured = measure(
                        row,
                        wrk=wrk,
                        args=args,
                        children=children,
                        redis_url=redis_url if row.mode == "redis" else None,
                    )
                    rounds.append({"round": round_no, **measured})
            if redis_url:
                keys_left = len(asyncio.run(_redis_keys(redis_url, prefix)))
        finally:
            for child in reversed(children):
                child.stop()
            if redis_url:
                with contextlib.suppress(Exception):
                    asyncio.run(_delete_prefix(redis_url, prefix))
    summary = tp.summarize(rounds)
    by_name = {row["target"]: row for row in summary}
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": tp.machine_info(load_before),
        "settings": {
            "loadgen": "wrk" if wrk else "python",
            "wrk": tp._version([wrk, "-v"]) if wrk else None,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "rounds": args.rounds,
            "rule": RULE,
            "redis": bool(redis_url),
            "redis_prefix": prefix if redis_url else None,
            "redis_keys_under_prefix_after_run": keys_left,
        },
        "results": summary,
        "rounds": rounds if args.rounds > 1 else [],
        "ratios": ratios(by_name),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Cost of a rate-limited route vs an unlimited one (in-process and Redis)."
    )
    tp.add_load_arguments(parser, rounds=3)
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help="Redis for the shared rows ('' to skip them); only keys under a fresh "
        "gwbench:<hex>: prefix are written, and deleted at the end",
    )
    args = parser.parse_args(argv)
    tp.check_load_arguments(parser, args)
    code, report, out = tp.run_and_save(run, args, "ratelimit")
    if report is None:
        return code
    print()
    print(format_table(report["results"]))
    print()
    print(format_ratios(report["ratios"]) or "(no ratios: a row is missing)")
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
