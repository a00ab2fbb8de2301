"""Policy decision latency: `PolicyEngine.decide` vs stock pycasbin on the same generated data.

    .venv/bin/python bench/policy.py                  # 1k/10 tenants, 10k/1k, 100k/10k
    .venv/bin/python bench/policy.py --sizes 1k,10k --requests 5000 --out bench/results/x.json

Data (as in /work/shared/notes/performance.md B0): `rules` = p lines + g lines, 1:1. Each
tenant `tN` has p lines `ROLE, tN, /api/res{j}/:id, ACT` (roles admin/editor/viewer, every
seventh one a deny) and users `uN_i` holding one role each (the g lines), plus the shipped
policy.csv (`*` rules). The engine gets the p lines as stored tenant rules and the g lines as
the `roles` argument; the stock `casbin.Enforcer` holds every tenant's p lines, the file rules
and the g lines, with `pathMatch`/`actMatch` registered.

Rows: `uncached` = distinct requests (random object ids: cache keys never repeat; tenants
already compiled), `cached` = one request repeated, `stock` = the uncached requests through
`enforce_ex` (sampled: it costs ~5 µs per p line). `wrong` counts sampled requests where the
engine and stock pycasbin disagree on allow/deny: it must be 0. GC is collected and frozen
after loading, as the engine does after a file load.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import casbin

from gateway.policy.engine import EngineLimits, PolicyEngine
from gateway.policy.matching import act_match, path_match
from gateway.policy.rules import Rule
from gateway.policy.snapshot import parse_snapshot

DATA = Path(__file__).resolve().parents[1] / "gateway" / "policy" / "data"
SIZES = {"1k": (1_000, 10), "10k": (10_000, 1_000), "100k": (100_000, 10_000)}
ROLES = ("admin", "editor", "viewer")
ACTS = ("GET", "POST", "PUT", "DELETE")
Request = tuple[str, tuple[str, ...], str, str, str]  # subject, roles, tenant, path, method


class Dataset:
    """The generated p lines per tenant and each user's roles (the g lines)."""

    def __init__(self, rules: int, tenants: int, seed: int = 7) -> None:
        per_tenant = max(2, rules // tenants)
        self.p_per_tenant = per_tenant // 2
        self.g_per_tenant = per_tenant - self.p_per_tenant
        self.tenants = [f"t{t}" for t in range(tenants)]
        self.rng = random.Random(seed)
        self.p_lines: dict[str, list[Rule]] = {t: self._p_lines(t) for t in self.tenants}

    def _p_lines(self, tenant: str) -> list[Rule]:
        rules = []
        for j in range(self.p_per_tenant):
            role, act = ROLES[j % 3], ACTS[(j // 3) % 4]
            eft = "deny" if j % 7 == 6 else "allow"
            rules.append(Rule(role, tenant, f"/api/res{j}/:id", act, eft))
        return rules

    def role_of(self, user_index: int) -> str:
        return ROLES[user_index % 3]

    def requests(self, n: int) -> list[Request]:
        """`n` requests of random members for their tenant's resources; ids never repeat."""
        out: list[Request] = []
        for k in range(n):
            tenant = self.rng.choice(self.tenants)
            i = self.rng.randrange(self.g_per_tenant)
            j = self.rng.randrange(self.p_per_tenant + 1)
            path = f"/api/res{j}/{k}{self.rng.randrange(10**6)}"
            user = f"u{tenant[1:]}_{i}"
            out.append((user, (self.role_of(i),), tenant, path, self.rng.choice(ACTS)))
        return out


def build_engine(data: Dataset) -> PolicyEngine:
    """An engine with every tenant's rules stored and compiled, GC frozen afterwards."""
    snapshot = parse_snapshot((DATA / "model.conf").read_text(), (DATA / "policy.csv").read_text())
    limits = EngineLimits(max_tenants=len(data.tenants) + 1, max_decisions=10_000)
    engine = PolicyEngine(snapshot, limits=limits, freeze_gc=False)
    for tenant, rules in data.p_lines.items():
        engine.set_tenant_rules(tenant, rules)
    for tenant in data.tenants:
        engine.decide("warm-up", (), tenant, "/", "GET")
    gc.collect()
    gc.freeze()
    return engine


def build_stock(data: Dataset) -> casbin.Enforcer:
    """One stock enforcer holding every tenant's p lines, the file rules and all g lines."""
    model_text = (DATA / "model.conf").read_text()
    model = casbin.model.Model()
    model.load_model_from_text(model_text)
    enforcer = casbin.Enforcer(model)
    enforcer.add_function("pathMatch", path_match)
    enforcer.add_function("actMatch", act_match)
    file_rules = parse_snapshot(model_text, (DATA / "policy.csv").read_text()).rules
    rows = [list(r.as_tuple()) for rules in data.p_lines.values() for r in rules]
    model["p"]["p"].policy.extend([list(r.as_tuple()) for r in file_rules] + rows)
    for tenant in data.tenants:
        for i in range(data.g_per_tenant):
            model["g"]["g"].policy.append([f"u{tenant[1:]}_{i}", data.role_of(i), tenant])
    enforcer.build_role_links()
    gc.collect()
    gc.freeze()
    return enforcer


def percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile `q` (0..1) of sorted nanoseconds, in µs."""
    rank = max(1, min(len(sorted_ns), round(q * len(sorted_ns) + 0.5)))
    return sorted_ns[rank - 1] / 1000.0


def timed(call: Callable[[Request], object], requests: list[Request]) -> dict[str, float]:
    """p50/p99/max in µs of `call` over `requests`, one `perf_counter_ns` pair per call."""
    clock = time.perf_counter_ns
    lat = []
    for request in requests:
        start = clock()
        call(request)
        lat.append(clock() - start)
    lat.sort()
    p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
    return {"n": len(lat), "p50_us": p50, "p99_us": p99, "max_us": lat[-1] / 1000.0}


def run_size(rules: int, tenants: int, requests: int, stock_n: int) -> dict[str, Any]:
    """Every measurement of one size, as a JSON-able dict."""
    data = Dataset(rules, tenants)
    engine = build_engine(data)
    reqs = data.requests(requests)
    uncached = timed(lambda r: engine.decide(*r), reqs)
    cached = timed(lambda r: engine.decide(*r), [reqs[0]] * requests)
    stock = build_stock(data)
    sample = reqs[:stock_n]
    stock_stats = timed(lambda r: stock.enforce_ex(r[0], r[2], r[3], r[4]), sample)
    wrong = sum(
        engine.decide(*r).allow is not bool(stock.enforce_ex(r[0], r[2], r[3], r[4])[0])
        for r in sample
    )
    gc.unfreeze()
    sizes = {"rules": rules, "tenants": tenants, "p_lines": tenants * data.p_per_tenant}
    return {**sizes, "uncached": uncached, "cached": cached, "stock": stock_stats, "wrong": wrong}


def fmt(us: float) -> str:
    return f"{us / 1000:.1f} ms" if us >= 1000 else f"{us:.1f} µs"


def table(results: list[dict[str, Any]]) -> str:
    """The results as a Markdown table (the one bench/README.md shows)."""
    lines = [
        "| rules | tenants | decide uncached p50 / p99 | decide cached p50 / p99 "
        "| stock pycasbin p50 / p99 (n) | wrong |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        u, c, s = r["uncached"], r["cached"], r["stock"]
        lines.append(
            f"| {r['rules']:,} | {r['tenants']:,} | {fmt(u['p50_us'])} / {fmt(u['p99_us'])} "
            f"| {fmt(c['p50_us'])} / {fmt(c['p99_us'])} "
            f"| {fmt(s['p50_us'])} / {fmt(s['p99_us'])} ({s['n']}) | {r['wrong']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1k,10k,100k", help="comma list of 1k, 10k, 100k")
    parser.add_argument("--requests", type=int, default=20_000, help="engine requests per row")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: results/)")
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = args.out or Path(__file__).parent / "results" / f"policy-{stamp}.json"
    results = []
    for name in args.sizes.split(","):
        rules, tenants = SIZES[name]
        stock_n = {"1k": 2000, "10k": 300}.get(name, 50)
        results.append(run_size(rules, tenants, args.requests, stock_n))
        print(f"{name}: done", flush=True)
    print(table(results))
    meta = {"python": platform.python_version(), "pycasbin": casbin_version(), "time": stamp}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"wrote {out}")


def casbin_version() -> str:
    from importlib.metadata import version

    return version("pycasbin")


if __name__ == "__main__":
    main()
