"""Password sign-in (Argon2id) throughput, and whether it slows the proxied path, in one run.

    .venv/bin/python bench/signin.py [--duration 8] [--signin-clients 8] [--connections 32]

Starts ``bench/upstream.py`` and the real gateway exactly as ``bench/throughput.py`` does (its
helpers are imported, not copied), signs up one user, then measures, one phase after another:

1. ``probe``: a light open-loop probe alone, one ``GET /public/bench`` every ``--probe-interval``
   seconds, latency counted from the scheduled send time (so a stalled server cannot hide);
2. ``proxied``: ``GET /public/bench`` alone with wrk (or the built-in Python generator);
3. ``signin``: ``--signin-clients`` clients doing correct-password sign-ins back to back, with the
   probe running at the same time;
4. ``signin-unknown``: the same with an unknown email (401; the gateway verifies a dummy hash);
5. ``both``: the sign-in load of 3 and the proxied load of 2 at the same time;
6. ``burn`` (a control): the probe while ``--burners`` separate processes run Argon2id with the
   gateway's parameters. The CPU is as busy as in 3, but not because of the gateway, so the
   probe's latency here is what CPU sharing alone costs it.

Prints a table, the ratios (proxied p99 under sign-in load ÷ alone, probe p99 under sign-ins ÷
alone and beside outside Argon2id ÷ alone, unknown-email ÷ correct-password sign-in rate), and
writes everything to ``bench/results/signin-<time>.json``. Every phase is bounded in time; every
child runs in its own process group and is stopped on exit, on errors, on Ctrl+C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.util
import math
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

try:
    from bench import throughput as tp
except ModuleNotFoundError:  # run as a script: bench/ is on sys.path, the project root is not
    import throughput as tp  # type: ignore[no-redef]

SIGNUP_PATH = "/.gateway/auth/signup"
SIGNIN_PATH = "/.gateway/auth/signin"
EMAIL = "bench-user@example.com"
UNKNOWN_EMAIL = "nobody-here@example.com"
TENANT = "bench"
SIGNIN_TIMEOUT = 30.0  # per sign-in request; a queue of 8 x ~20 ms hashes is far below it
PHASE_SLACK = 60.0  # a phase is cancelled this long after its nominal end
# A CPU burner for the control phase: Argon2id verifications with the gateway's own parameters,
# in a separate process, until it is stopped.
BURN_CODE = """
import argon2
from gateway.identity.passwords import Argon2Params
p = Argon2Params()
h = argon2.PasswordHasher(time_cost=p.time_cost, memory_cost=p.memory_cost,
                          parallelism=p.parallelism, type=argon2.Type.ID)
stored = h.hash("bench-burner-password")
while True:
    try:
        h.verify(stored, "not-the-password")
    except argon2.exceptions.VerifyMismatchError:
        pass
"""

# --------------------------------------------------------------------------------------------
# Pure helpers (tested in tests/unit/test_bench_signin.py)


def latency_summary(
    samples_ms: Sequence[float],
    seconds: float,
    *,
    statuses: dict[int, int] | None = None,
    expect: int = 200,
    errors: int = 0,
) -> dict[str, Any]:
    """Count, rate, nearest-rank p50/p99 and max of latencies (ms) measured over `seconds`.

    `unexpected` counts responses whose status is not `expect`; `errors` are requests that got
    no response at all (connection errors, timeouts).
    """
    ordered = sorted(samples_ms)
    statuses = statuses or {}
    return {
        "count": len(ordered),
        "seconds": round(seconds, 3),
        "rate": round(len(ordered) / seconds, 2) if seconds > 0 else 0.0,
        "p50_ms": round(tp.percentile(ordered, 50), 3),
        "p99_ms": round(tp.percentile(ordered, 99), 3),
        "max_ms": round(ordered[-1], 3) if ordered else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "expect": expect,
        "unexpected": sum(n for code, n in statuses.items() if code != expect),
        "errors": errors,
    }


def ratio(numerator: float, denominator: float, digits: int = 3) -> float:
    """numerator ÷ denominator rounded, or NaN when either is missing or the denominator is 0."""
    if not denominator or math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    return round(numerator / denominator, digits)


def _num(value: float | None, digits: int = 2) -> str:
    """A fixed-point figure, or "-" when it is missing (None or NaN)."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """One line per measurement: label, rate/s, p50, p99, max, bad answers, errors, CPU."""
    head = (
        f"{'measurement':<38} {'rate/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'bad':>5} {'err':>4} {'gw CPU ms/op':>12}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append(
            f"{row['label']:<38} {row['rate']:>9,.1f} {_num(row['p50_ms']):>8} "
            f"{_num(row['p99_ms']):>8} {_num(row.get('max_ms')):>8} {row['unexpected']:>5} "
            f"{row['errors']:>4} {_num(row.get('gateway_cpu_ms_per_op'), 3):>12}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Load generators (asyncio; the proxied load is wrk in a thread, or tp.python_load)


def _client(connections: int, timeout: float) -> aiohttp.ClientSession:
    # No cookie jar: every sign-in is a fresh browser, so no old session is revoked on the way.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
        timeout=aiohttp.ClientTimeout(total=timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


async def signin_load(
    base_url: str, *, email: str, password: str, expect: int, duration: float, clients: int
) -> dict[str, Any]:
    """`clients` workers POST sign-ins back to back for `duration` s (keep-alive, no cookies).

    Requests started before the deadline are completed and counted.
    """
    url = base_url + SIGNIN_PATH
    body = {"email": email, "password": password}
    samples: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    clock = time.perf_counter_ns
    async with _client(clients, SIGNIN_TIMEOUT) as session:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + duration

        async def worker() -> None:
            nonlocal errors
            while loop.time() < deadline:
                t0 = clock()
                try:
                    async with session.post(url, json=body, allow_redirects=False) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, OSError, TimeoutError):
                    errors += 1
                    await asyncio.sleep(0.05)
                    continue
                samples.append((clock() - t0) / 1e6)
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = loop.time() - started
    return latency_summary(samples, elapsed, statuses=statuses, expect=expect, errors=errors)


async def probe_load(url: str, *, duration: float, interval: float) -> dict[str, Any]:
    """One GET every `interval` s, each in its own task (open loop), for `duration` s.

    Latency runs from the *scheduled* send time, so a server or loop stall shows up in full
    instead of delaying the next probe (no coordinated omission).
    """
    samples: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    clock = time.perf_counter  # not loop.time(): uvloop's clock ticks in whole milliseconds
    async with _client(64, 10.0) as session:
        started = clock()
        count = max(1, int(duration / interval))

        async def one(scheduled: float) -> None:
            nonlocal errors
            try:
                async with session.get(url, allow_redirects=False) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, OSError, TimeoutError):
                errors += 1
                return
            samples.append((clock() - scheduled) * 1e3)
            statuses[status] = statuses.get(status, 0) + 1

        tasks = []
        for k in range(count):
            scheduled = started + k * interval
            await asyncio.sleep(max(0.0, scheduled - clock()))
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        elapsed = clock() - started
    return latency_summary(samples, elapsed, statuses=statuses, expect=200, errors=errors)


async def proxied_load(
    url: str, *, wrk: str | None, duration: float, connections: int
) -> dict[str, Any]:
    """wrk (in a worker thread, so the loop keeps running) or the built-in Python generator."""
    if wrk:
        result = await asyncio.to_thread(
            tp.run_wrk, wrk, url, duration=duration, connections=connections
        )
    else:
        result = await tp.python_load(url, duration=duration, connections=connections)
    out = {
        "count": result.requests,
        "seconds": round(result.seconds, 3),
        "rate": round(result.rps, 2),
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "max_ms": None,  # wrk --latency reports p50..p99 only
        "expect": 200,
        "unexpected": result.non_2xx,
        "errors": result.errors,
        "tool": result.tool,
        "connections": connections,
    }
    if "percentiles_ms" in result.extra:
        out["percentiles_ms"] = result.extra["percentiles_ms"]
    return out


# --------------------------------------------------------------------------------------------
# The run


async def _post_json(session: aiohttp.ClientSession, url: str, body: dict[str, str]) -> int:
    async with session.post(url, json=body) as resp:
        await resp.read()
        return resp.status


async def setup_user(base_url: str, password: str) -> None:
    """Signs up the bench user, then checks one good and one unknown-email sign-in.

    The unknown-email sign-in also makes the gateway's lazy dummy hash before measuring.
    """
    async with _client(2, SIGNIN_TIMEOUT) as session:
        body = {"email": EMAIL, "password": password, "tenant": TENANT}
        status = await _post_json(session, base_url + SIGNUP_PATH, body)
        if status != 201:
            raise RuntimeError(f"sign-up answered {status}, expected 201")
        good = {"email": EMAIL, "password": password}
        if (status := await _post_json(session, base_url + SIGNIN_PATH, good)) != 200:
            raise RuntimeError(f"correct-password sign-in answered {status}, expected 200")
        unknown = {"email": UNKNOWN_EMAIL, "password": password}
        if (status := await _post_json(session, base_url + SIGNIN_PATH, unknown)) != 401:
            raise RuntimeError(f"unknown-email sign-in answered {status}, expected 401")


async def measure_phase(
    name: str,
    parts: dict[str, Callable[[], Awaitable[dict[str, Any]]]],
    *,
    duration: float,
    children: Sequence[tp.Child],
    ops_part: str | None,
    extra_children: Sequence[tp.Child] = (),
) -> dict[str, Any]:
    """Runs every part at once (bounded), with the children's CPU time around it."""
    print(f"measuring {name} ({', '.join(parts)}) ...", file=sys.stderr)
    watched = [*children, *extra_children]
    cpu_before = {c.name: tp.group_cpu_seconds(c.pid) for c in watched}
    results = await asyncio.wait_for(
        asyncio.gather(*(make() for make in parts.values())), duration + PHASE_SLACK
    )
    cpu_after = {c.name: tp.group_cpu_seconds(c.pid) for c in watched}
    for child in watched:
        child.check_alive()
    phase: dict[str, Any] = dict(zip(parts, results, strict=True))
    cpu = {n: round(cpu_after[n] - cpu_before[n], 3) for n in cpu_before}
    phase["cpu_seconds"] = cpu
    if ops_part is not None:  # only when one part is (nearly) all of the gateway's work
        ops = phase[ops_part]["count"]
        phase[ops_part]["gateway_cpu_ms_per_op"] = round(cpu["gateway"] * 1e3 / max(ops, 1), 4)
    bad = False
    for part, result in phase.items():
        if part != "cpu_seconds" and (result["unexpected"] or result["errors"]):
            bad = True
            print(
                f"  WARNING {name}/{part}: {result['unexpected']} unexpected statuses "
                f"({result.get('statuses', 'see wrk')}), {result['errors']} errors",
                file=sys.stderr,
            )
    if bad:
        for child in children:
            print(f"  --- end of the {child.name} log ---\n{child.logs(1500)}", file=sys.stderr)
    return phase


async def run_phases(
    args: argparse.Namespace,
    base_url: str,
    wrk: str | None,
    children: Sequence[tp.Child],
    workdir: Path,
) -> dict[str, Any]:
    password = "bench-" + secrets.token_urlsafe(18)
    await setup_user(base_url, password)
    public_url = base_url + tp.BENCH_PATH
    d = float(max(1, round(args.duration)))  # wrk takes whole seconds; keep every part equal

    def signin(email: str, expect: int) -> Callable[[], Awaitable[dict[str, Any]]]:
        return lambda: signin_load(
            base_url,
            email=email,
            password=password,
            expect=expect,
            duration=d,
            clients=args.signin_clients,
        )

    def probe() -> Awaitable[dict[str, Any]]:
        return probe_load(public_url, duration=d, interval=args.probe_interval)

    def proxied(seconds: float = d) -> Awaitable[dict[str, Any]]:
        return proxied_load(public_url, wrk=wrk, duration=seconds, connections=args.connections)

    if args.warmup > 0:
        print(f"warm-up ({args.warmup:g}s proxied + sign-ins) ...", file=sys.stderr)
        await asyncio.gather(
            proxied(args.warmup),
            signin_load(
                base_url,
                email=EMAIL,
                password=password,
                expect=200,
                duration=args.warmup,
                clients=args.signin_clients,
            ),
        )
    m = measure_phase
    kw: dict[str, Any] = {"duration": d, "children": children}
    return {
        "probe": await m("probe", {"probe": probe}, ops_part="probe", **kw),
        "proxied": await m("proxied", {"proxied": proxied}, ops_part="proxied", **kw),
        "signin": await m(
            "signin", {"signin": signin(EMAIL, 200), "probe": probe}, ops_part="signin", **kw
        ),
        "signin-unknown": await m(
            "signin-unknown",
            {"signin": signin(UNKNOWN_EMAIL, 401), "probe": probe},
            ops_part="signin",
            **kw,
        ),
        "both": await m(
            "both", {"signin": signin(EMAIL, 200), "proxied": proxied}, ops_part=None, **kw
        ),
        "burn": await burn_phase(args, workdir, probe, children, d),
    }


async def burn_phase(
    args: argparse.Namespace,
    workdir: Path,
    probe: Callable[[], Awaitable[dict[str, Any]]],
    children: Sequence[tp.Child],
    duration: float,
) -> dict[str, Any]:
    """The control: the probe alone while `--burners` processes *outside* the gateway hash.

    Same Argon2id parameters as the gateway, so the CPU is as busy as during sign-ins but the
    gateway's event loop has nothing to do with it. If the probe's p99 here is close to its
    p99 during sign-ins, that slowdown is CPU sharing, not the event loop being blocked.
    """
    burners = [
        tp.Child(f"argon2-burner-{i}", [sys.executable, "-c", BURN_CODE], workdir, cwd=workdir)
        for i in range(args.burners)
    ]
    try:
        await asyncio.sleep(0.5)  # let them import and start hashing
        return await measure_phase(
            "burn",
            {"probe": probe},
            duration=duration,
            children=children,
            ops_part=None,
            extra_children=burners,
        )
    finally:
        for burner in burners:
            burner.stop()


def table_rows(phases: dict[str, Any], args: argparse.Namespace, tool: str) -> list[dict]:
    c, s, p = args.connections, args.signin_clients, args.probe_interval
    labels = [
        ("signin", "signin", f"sign-in ok, {s} clients, alone"),
        ("signin-unknown", "signin", f"sign-in unknown email, {s} clients"),
        ("both", "signin", "sign-in ok, during proxied load"),
        ("proxied", "proxied", f"proxied GET ({tool} -c{c}), alone"),
        ("both", "proxied", "proxied GET, during sign-ins"),
        ("probe", "probe", f"probe GET every {p * 1e3:g} ms, alone"),
        ("signin", "probe", "probe GET, during sign-ins"),
        ("burn", "probe", f"probe GET, {args.burners} argon2 procs outside"),
    ]
    return [{"label": label, **phases[ph][part]} for ph, part, label in labels]


def summary(phases: dict[str, Any]) -> dict[str, float]:
    alone, both = phases["proxied"]["proxied"], phases["both"]["proxied"]
    return {
        "signin_rate_alone": phases["signin"]["signin"]["rate"],
        "signin_rate_during_proxied": phases["both"]["signin"]["rate"],
        "unknown_over_correct_signin_rate": ratio(
            phases["signin-unknown"]["signin"]["rate"], phases["signin"]["signin"]["rate"]
        ),
        "proxied_rate_under_signins_over_alone": ratio(both["rate"], alone["rate"]),
        "proxied_p50_under_signins_over_alone": ratio(both["p50_ms"], alone["p50_ms"]),
        "proxied_p99_under_signins_over_alone": ratio(both["p99_ms"], alone["p99_ms"]),
        "probe_p99_under_signins_over_alone": ratio(
            phases["signin"]["probe"]["p99_ms"], phases["probe"]["probe"]["p99_ms"]
        ),
        "probe_max_under_signins_ms": phases["signin"]["probe"]["max_ms"],
        "probe_p99_beside_outside_argon2_over_alone": ratio(
            phases["burn"]["probe"]["p99_ms"], phases["probe"]["probe"]["p99_ms"]
        ),
        "signin_over_outside_argon2_probe_p99": ratio(
            phases["signin"]["probe"]["p99_ms"], phases["burn"]["probe"]["p99_ms"]
        ),
    }


def _new_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.new_event_loop
    return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    wrk = None if args.loadgen == "python" else shutil.which("wrk")
    if args.loadgen == "wrk" and wrk is None:
        raise SystemExit("--loadgen wrk: wrk is not installed (apt-get install -y wrk)")
    if wrk is None and args.loadgen == "auto":
        print("note: wrk not found; using the built-in Python load generator", file=sys.stderr)
    if importlib.util.find_spec("gateway") is None:
        raise SystemExit(f"the gateway package is not importable by {sys.executable}")
    children: list[tp.Child] = []
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gateway-bench-signin-") as tmp:
        workdir = Path(tmp)
        try:
            upstream, upstream_url = tp.start_upstream(workdir)
            children.append(upstream)
            gw, gw_url = tp.start_gateway(workdir, upstream_url)
            children.append(gw)
            with asyncio.Runner(loop_factory=_new_loop_factory()) as runner:
                phases = runner.run(run_phases(args, gw_url, wrk, children, workdir))
        finally:
            for child in reversed(children):
                child.stop()
    tool = "wrk" if wrk else "python"
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": tp.machine_info(load_before),
        "settings": {
            "loadgen": tool,
            "wrk": tp._version([wrk, "-v"]) if wrk else None,
            "duration_s": float(max(1, round(args.duration))),
            "warmup_s": args.warmup,
            "connections": args.connections,
            "signin_clients": args.signin_clients,
            "probe_interval_s": args.probe_interval,
            "burners": args.burners,
            "path": tp.BENCH_PATH,
        },
        "phases": phases,
        "table": table_rows(phases, args, tool),
        "summary": summary(phases),
    }


def format_summary(found: dict[str, float]) -> str:
    return "\n".join(
        [
            f"sign-ins/s: {found['signin_rate_alone']:.1f} alone, "
            f"{found['signin_rate_during_proxied']:.1f} during proxied load; "
            f"unknown-email / correct-password rate x{found['unknown_over_correct_signin_rate']}",
            f"proxied under sign-ins / alone: req/s "
            f"x{found['proxied_rate_under_signins_over_alone']}, "
            f"p50 x{found['proxied_p50_under_signins_over_alone']}, "
            f"p99 x{found['proxied_p99_under_signins_over_alone']}",
            f"probe p99 under sign-ins / alone: x{found['probe_p99_under_signins_over_alone']} "
            f"(worst probe during sign-ins {found['probe_max_under_signins_ms']:.1f} ms); "
            f"beside argon2 in other processes / alone: "
            f"x{found['probe_p99_beside_outside_argon2_over_alone']}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Argon2id sign-in throughput and its effect on proxied latency, one run."
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per phase (8)")
    parser.add_argument("--warmup", type=float, default=1.0, help="one warm-up, seconds (1)")
    parser.add_argument(
        "--signin-clients", type=int, default=8, help="concurrent sign-in clients (8)"
    )
    parser.add_argument("--connections", type=int, default=32, help="proxied-load connections (32)")
    parser.add_argument(
        "--probe-interval", type=float, default=0.02, help="seconds between probes (0.02)"
    )
    parser.add_argument(
        "--burners",
        type=int,
        default=2,
        help="argon2 processes outside the gateway in the control phase (2 = its pool size)",
    )
    parser.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="proxied load: auto = wrk when installed, else the built-in Python generator",
    )
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/signin-*.json)")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be in [1, 600] and --warmup in [0, 60]")
    if not 1 <= args.signin_clients <= 256 or not 1 <= args.connections <= 10_000:
        parser.error("--signin-clients must be in [1, 256] and --connections in [1, 10000]")
    if not 0.001 <= args.probe_interval <= 1 or not 0 <= args.burners <= 16:
        parser.error("--probe-interval must be in [0.001, 1] and --burners in [0, 16]")
    code, report, out = tp.run_and_save(run, args, "signin")
    if report is None:
        return code
    print()
    print(format_table(report["table"]))
    print()
    print(format_summary(report["summary"]))
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
