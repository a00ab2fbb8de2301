"""The whole data path in one run: upstream, nginx, and the gateway on three kinds of route.

    .venv/bin/python bench/full.py [--duration 8] [--connections 32] [--rounds 1]
                                   [--idle 10000] [--profile] [--out FILE.json]

Starts on 127.0.0.1 (with `throughput.py`'s helpers): the raw upstream, nginx as a plain
proxy, and one gateway worker. The gateway signs up a user (its own tenant, admin role), and
creates a service account with an API key, then wrk measures, each for `--duration` seconds:

* upstream: `GET /public/bench` to the upstream directly; nginx: the same through nginx;
* py-floor: the same through `pyfloor.py`, a minimal Python proxy with no policy (uvloop,
  httptools): what the event loop, the parser and the socket calls alone cost in CPython;
* gw-public: the same through the gateway (a public path: no session, no policy);
* gw-session: `GET /app/bench` with the session cookie: session, tenant, policy, a
  rate-limit rule keyed by user and route, the signed assertion;
* gw-apikey: `GET /app/bench` with `Authorization: Bearer <key>`: the same pipeline for a
  service account;
* gw-browser: gw-session with what a browser sends besides (`BROWSER_HEADERS`: twelve more
  headers, two more cookies), as the other rows carry only Host and their credential;
* nginx-fa: `GET /app/bench` with the session cookie through nginx in forward-auth mode (the
  shipped `examples/forward-auth/nginx-server.conf`): nginx asks the gateway's
  `/.gateway/verify` about every request (the same pipeline, no upstream exchange in the
  gateway), then proxies to the upstream itself; a rate-limited route, so never reused;
* nginx-fa-cached: `GET /docs/bench` with the session cookie, the same way, on a route
  without a rate-limit rule: nginx reuses the gateway's answer for up to
  `DECISION_CACHE_SECONDS` (`forward_auth.decision_cache_seconds`), asking again after that.

Then: the gateway's peak RSS (VmHWM), and `--idle N` idle keep-alive client connections held
(`bench/idle.py`). With `--profile`, each gateway row is run once more under `py-spy record`
and the top functions by own time are printed. Requires wrk (rows carry headers).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

try:
    from bench import idle, spy
    from bench import throughput as tp
except ModuleNotFoundError:  # run as a script: bench/ is on sys.path, the project root is not
    import idle  # type: ignore[no-redef]
    import spy  # type: ignore[no-redef]
    import throughput as tp  # type: ignore[no-redef]

PUBLIC_PATH = "/public/bench"
APP_PATH = "/app/bench"
DOCS_PATH = "/docs/bench"
"""An authenticated path no rate-limit rule matches: its forward-auth answers are reusable."""
DECISION_CACHE_SECONDS = 1
RULE = {
    "name": "bench-user",
    "match": {"path": "/app/*"},
    "key": ["user", "route"],
    "rate": "1000000/s",
    "burst": 1_000_000,
}
PASSWORD = "bench-plum-tractor-nebula-42"  # noqa: S105 - a throwaway bench account
ADMIN = "/.gateway/admin/v1"
PYFLOOR_SCRIPT = tp.BENCH_DIR / "pyfloor.py"
EXAMPLE_FORWARD_AUTH = tp.BENCH_DIR.parent / "examples" / "forward-auth" / "nginx-server.conf"
FORWARD_AUTH_TEMPLATE = tp.BENCH_DIR / "nginx-forward-auth.conf.template"
Row = tuple[str, str, str, tuple[str, ...]]  # name, base url, path, headers


def gateway_config(workdir: Path, upstream_url: str) -> dict[str, Any]:
    """`throughput.gateway_config` plus the rate-limit rule on `/app/*`, and loopback as a
    trusted proxy (nginx asks `/.gateway/verify` in the `nginx-fa` row)."""
    config = tp.gateway_config(workdir, upstream_url)
    config["rate_limits"] = {"defaults": True, "rules": [RULE]}
    config["trusted_proxies"] = ["127.0.0.1/32"]
    return config


def start_forward_auth_nginx(
    nginx: str, workdir: Path, gateway_url: str, upstream_url: str
) -> tuple[tp.Child, str]:
    """nginx with the shipped forward-auth example: every request is first asked of the
    gateway's `/.gateway/verify` (auth_request), then proxied to the upstream by nginx."""
    ngdir = workdir / "nginx-fa"
    ngdir.mkdir()
    ngdir.chmod(0o755)
    port = tp.free_port()
    server = EXAMPLE_FORWARD_AUTH.read_text()
    for name, value in (
        ("LISTEN_ADDR", f"{tp.HOST}:{port}"),
        ("GATEWAY_ADDR", gateway_url.removeprefix("http://")),
        ("APP_ADDR", upstream_url.removeprefix("http://")),
        ("CACHE_DIR", str(ngdir / "decisions")),
    ):
        server = server.replace(name, value)
    (ngdir / "server.conf").write_text(server)
    conf = ngdir / "nginx.conf"
    conf.write_text(tp.render_nginx_conf(FORWARD_AUTH_TEMPLATE.read_text(), workdir=ngdir))
    cmd = [nginx, "-p", str(ngdir), "-e", str(ngdir / "error.log"), "-c", str(conf)]
    cmd += ["-g", "daemon off;"]
    child = tp.Child("nginx-fa", cmd, workdir)
    url = f"http://{tp.HOST}:{port}"
    tp.wait_http(child, url + "/.gateway/healthz")
    return child, url


def start_pyfloor(workdir: Path, upstream_url: str) -> tuple[tp.Child, str]:
    """The minimal Python proxy (`pyfloor.py`) in front of the upstream."""
    port = tp.free_port()
    upstream = upstream_url.removeprefix("http://")
    cmd = [sys.executable, str(PYFLOOR_SCRIPT), "--port", str(port), "--upstream", upstream]
    child = tp.Child("py-floor", cmd, workdir)
    url = f"http://{tp.HOST}:{port}"
    tp.wait_http(child, url + PUBLIC_PATH)
    return child, url


def start_gateway(
    workdir: Path,
    upstream_url: str,
    name: str = "gateway",
    source: Path | None = None,
    python: str | None = None,
) -> tuple[tp.Child, str]:
    """One gateway worker; `source` (a directory holding another `gateway/` package) runs
    that code instead, e.g. a copy of an older tree for a before/after comparison, and
    `python` another interpreter (one whose environment has the gateway's dependencies)."""
    import yaml

    gwdir = workdir / name
    gwdir.mkdir()
    config = gateway_config(gwdir, upstream_url)
    if source is None:  # an older tree may not know the key
        config["forward_auth"] = {"decision_cache_seconds": DECISION_CACHE_SECONDS}
    path = gwdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    if source is not None:
        env["PYTHONPATH"] = str(source.resolve())
    cmd = [python or sys.executable, "-m", "gateway", "serve", "--config", str(path)]
    child = tp.Child(name, cmd, workdir, cwd=gwdir, env=env)
    url = f"http://{config['listen']}"
    tp.wait_http(child, url + "/.gateway/healthz")
    return child, url


async def _post(
    http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.post(url, json=body, headers=headers or {}) as resp:
        data = await resp.json(content_type=None)
        return resp.status, data, resp


async def _credentials(base: str) -> tuple[str, str]:
    """Signs up the bench user and makes an API key: (cookie header, bearer header)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        body = {"email": "bench@example.com", "password": PASSWORD, "tenant": "bench"}
        status, data, resp = await _post(http, f"{base}/.gateway/auth/signup", body)
        if status != 201:
            raise RuntimeError(f"sign-up answered {status}: {data}")
        morsel = resp.cookies["gw_session"]
        cookie = f"Cookie: gw_session={morsel.value}"
        admin = {"Cookie": cookie.split(": ", 1)[1], "Origin": base}
        slug = data["tenant"]["slug"]
        url = f"{base}{ADMIN}/tenants/{slug}/service-accounts"
        status, account, _ = await _post(http, url, {"name": "bench", "roles": ["viewer"]}, admin)
        if status != 201:
            raise RuntimeError(f"service account answered {status}: {account}")
        url = f"{base}{ADMIN}/service-accounts/{account['id']}/keys"
        status, key, _ = await _post(http, url, {}, admin)
        if status != 201:
            raise RuntimeError(f"API key answered {status}: {key}")
        return cookie, f"Authorization: Bearer {key['key']}"


async def _check(base: str, path: str, headers: Sequence[str], limited: bool) -> None:
    wanted = dict(h.split(": ", 1) for h in headers)
    async with aiohttp.ClientSession() as http, http.get(base + path, headers=wanted) as resp:
        await resp.read()
        policy = resp.headers.get("RateLimit-Policy")
        if resp.status != 200 or (policy is not None) != limited:
            raise RuntimeError(f"{path}: status {resp.status}, RateLimit-Policy {policy!r}")


def measure(row: Row, wrk: str, args: argparse.Namespace, children: list[tp.Child]) -> dict:
    name, base, path, headers = row

    def load(seconds: float) -> tp.LoadResult:
        return tp.run_wrk(
            wrk, base + path, duration=seconds, connections=args.connections, headers=headers
        )

    if args.warmup > 0:
        load(args.warmup)
    before = {c.name: tp.group_cpu_split(c.pid) for c in children}
    result = load(args.duration)
    for child in children:
        child.check_alive()
    after = {c.name: tp.group_cpu_split(c.pid) for c in children}
    spent = {
        name: (after[name][0] - user, after[name][1] - system)
        for name, (user, system) in before.items()
    }
    cpu = {name: round(sum(split) * 1e3 / result.requests, 4) for name, split in spent.items()}
    kernel = {
        name: round(system / (user + system), 3) if user + system > 0 else 0.0
        for name, (user, system) in spent.items()
    }
    if result.non_2xx or result.errors:
        bad = f"{result.non_2xx} non-2xx, {result.errors} errors"
        print(f"  WARNING {name}: {bad}", file=sys.stderr)
    return {
        "target": name,
        **result.to_json(),
        "server_cpu_ms_per_request": cpu,
        "server_kernel_share": kernel,
    }


def ratios(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Every row ÷ nginx: req/s, p50 and p99."""
    base = rows.get("nginx")
    if base is None:
        return {}
    return {
        f"{name}/nginx": {
            "rps": round(row["rps"] / base["rps"], 3),
            "p50": round(row["p50_ms"] / base["p50_ms"], 2),
            "p99": round(row["p99_ms"] / base["p99_ms"], 2),
        }
        for name, row in rows.items()
        if name != "nginx"
    }


def _cpu_owner(target: str) -> str | None:
    """Whose CPU the report's per-request columns show for a row (None: no proxy of ours)."""
    if target in ("upstream", "nginx"):
        return None
    if target.startswith("base-"):
        return "baseline"
    return "py-floor" if target == "py-floor" else "gateway"


def _cpu_columns(row: dict[str, Any]) -> str:
    """The `CPU µs` and `kernel` cells of a row: its proxy's CPU per request, system share."""
    owner = _cpu_owner(row["target"])
    if owner is None:
        return f"{'-':>9} {'-':>7}"
    cpu = row["server_cpu_ms_per_request"].get(owner, 0) * 1e3
    kernel = row.get("server_kernel_share", {}).get(owner, 0.0)
    return f"{cpu:>9.0f} {kernel:>7.0%}"


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"{'target':<15} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'÷nginx':>7} "
        f"{'p99÷ng':>7} {'CPU µs':>9} {'kernel':>7} {'bad':>4}",
        "-" * 80,
    ]
    for row in report["results"]:
        r = report["ratios"].get(f"{row['target']}/nginx", {})
        lines.append(
            f"{row['target']:<15} {row['rps']:>9,.0f} {row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} "
            f"{r.get('rps', 1.0):>7.3f} {r.get('p99', 1.0):>7.2f} {_cpu_columns(row)} "
            f"{row['non_2xx'] + row['errors']:>4}"
        )
    mem = report["gateway_memory_kib"]
    lines.append(f"\ngateway worker peak RSS (VmHWM): {mem.get('VmHWM', 0) / 1024:.1f} MiB")
    if held := report.get("idle"):
        lines.append(
            f"idle keep-alive connections: {held['held']}/{held['wanted']} held "
            f"({held['still_open_at_probe']} still open at the probe), probe status "
            f"{held['probe_status']}, RSS {held['rss_before_kib'] / 1024:.1f} -> "
            f"{held['rss_held_kib'] / 1024:.1f} MiB "
            f"({held['rss_per_connection_bytes']:,} bytes per connection)"
        )
    return "\n".join(lines)


BROWSER_HEADERS = (
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36",
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "Accept-Language: en-GB,en;q=0.9,de;q=0.8",
    "Accept-Encoding: gzip, deflate, br, zstd",
    "Referer: http://127.0.0.1/app/",
    'Sec-Ch-Ua: "Chromium";v="156", "Not)A;Brand";v="24"',
    "Sec-Ch-Ua-Mobile: ?0",
    'Sec-Ch-Ua-Platform: "Linux"',
    "Sec-Fetch-Dest: document",
    "Sec-Fetch-Mode: navigate",
    "Sec-Fetch-Site: same-origin",
    "Upgrade-Insecure-Requests: 1",
)
"""What a browser sends besides Host and Cookie (row `gw-browser`): per-header work shows."""


def browser_headers(cookie: str) -> tuple[str, ...]:
    """`BROWSER_HEADERS` and a Cookie header holding the session among other cookies."""
    session = cookie.removeprefix("Cookie: ")
    return (*BROWSER_HEADERS, f"Cookie: _ga=GA1.1.1234567890.1700000000; theme=dark; {session}")


def _rows(upstream: str, nginx: str, gateway: str, cookie: str, bearer: str) -> list[Row]:
    return [
        ("upstream", upstream, PUBLIC_PATH, ()),
        ("nginx", nginx, PUBLIC_PATH, ()),
        ("gw-public", gateway, PUBLIC_PATH, ()),
        ("gw-session", gateway, APP_PATH, (cookie,)),
        ("gw-apikey", gateway, APP_PATH, (bearer,)),
        ("gw-browser", gateway, APP_PATH, browser_headers(cookie)),
    ]


def run(args: argparse.Namespace, wrk: str, nginx: str) -> dict[str, Any]:
    idle.raise_fd_limit(args.idle + 4096)
    rounds: list[dict[str, Any]] = []
    children: list[tp.Child] = []
    report: dict[str, Any] = {"started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory(prefix="gateway-bench-full-") as tmp:
        workdir = Path(tmp)
        try:
            upstream, up_url = tp.start_upstream(workdir)
            children.append(upstream)
            ng, ng_url = tp.start_nginx(nginx, workdir, int(up_url.rsplit(":", 1)[1]))
            gw, gw_url = start_gateway(workdir, up_url)
            children += [ng, gw]
            cookie, bearer = asyncio.run(_credentials(gw_url))
            rows = _rows(up_url, ng_url, gw_url, cookie, bearer)
            fa, fa_url = start_forward_auth_nginx(nginx, workdir, gw_url, up_url)
            floor, floor_url = start_pyfloor(workdir, up_url)
            children += [fa, floor]
            forward_auth_rows: list[Row] = [
                ("nginx-fa", fa_url, APP_PATH, (cookie,)),
                ("nginx-fa-cached", fa_url, DOCS_PATH, (cookie,)),
            ]
            if args.baseline is not None or args.baseline_python is not None:
                base, base_url = start_gateway(
                    workdir, up_url, "baseline", args.baseline, args.baseline_python
                )
                children.append(base)
                cookie, bearer = asyncio.run(_credentials(base_url))
                rows += [
                    (f"base-{n.removeprefix('gw-')}", *rest)
                    for n, *rest in _rows(up_url, ng_url, base_url, cookie, bearer)[2:]
                ]
            rows += forward_auth_rows
            for name, base_url, path, headers in rows[2:]:
                # nginx passes the identity on, not the verify answer's rate-limit fields.
                limited = not name.endswith("-public") and not name.startswith("nginx-fa")
                asyncio.run(_check(base_url, path, headers, limited=limited))
            measured = [*rows[:2], ("py-floor", floor_url, PUBLIC_PATH, ()), *rows[2:]]
            for round_no in range(1, args.rounds + 1):
                for row in measured:
                    print(f"measuring {row[0]} round {round_no}/{args.rounds}", file=sys.stderr)
                    rounds.append({"round": round_no, **measure(row, wrk, args, children)})
            if args.profile:
                report["profiles"] = spy.profile_rows(rows[2:5], gw.pid, args, workdir)
            report["gateway_memory_kib"] = idle.memory_kib(gw.pid)
            if args.idle:
                port = int(gw_url.rsplit(":", 1)[1])
                report["idle"] = idle.hold_idle(tp.HOST, port, args.idle, PUBLIC_PATH, gw.pid)
            report["gateway_memory_kib"] = idle.memory_kib(gw.pid)
        finally:
            for child in reversed(children):
                child.stop()
    rows_out = tp.summarize(rounds)
    report["results"] = rows_out
    report["ratios"] = ratios({r["target"]: r for r in rows_out})
    settings = {**vars(args), "out": str(args.out), "baseline": str(args.baseline)}
    settings["python"] = {"rows": sys.version, "base": args.baseline_python or sys.executable}
    report["settings"] = {**settings, "wrk": tp._version([wrk, "-v"])}
    report["settings"]["nginx"] = tp._version([nginx, "-v"])
    report["machine"] = {"cpus": os.cpu_count(), "commit": tp._git("rev-parse", "--short", "HEAD")}
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="upstream vs nginx vs gateway routes, one run")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per row (8)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per row (1)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds, median (1)")
    parser.add_argument("--idle", type=int, default=10_000, help="idle connections to hold")
    parser.add_argument("--profile", action="store_true", help="py-spy each gateway row")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a directory with another gateway/ package: adds base-* rows run from it",
    )
    parser.add_argument(
        "--baseline-python",
        help="the interpreter of the base-* rows (default: this one), e.g. another CPython build",
    )
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/full-*.json)")
    args = parser.parse_args(argv)
    wrk, nginx = shutil.which("wrk"), tp.find_nginx()
    if wrk is None or nginx is None:
        raise SystemExit("bench/full.py needs wrk and nginx (apt-get install -y wrk nginx)")
    code, report, out = tp.run_and_save(lambda a: run(a, wrk, nginx), args, "full")
    if report is None:
        return code
    print(format_report(report))
    for name, text in report.get("profiles", {}).items():
        print(f"\npy-spy, {name}: top functions by own time\n{text}")
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
