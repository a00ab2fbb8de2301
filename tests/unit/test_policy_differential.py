"""Differential test: the engine decides exactly as stock pycasbin on a random policy.

A seeded generator writes file rules (for `*` and for single tenants) and stored tenant rules
(roles, a custom role, user-specific grants; allow and deny; `*` suffixes, `:param`/`{param}`
segments, regex metacharacters that must stay literal, the reserved `/.gateway` namespace;
`*`, single methods and `A|B` alternatives). Requests are paths near those rules. Each one is
decided by `PolicyEngine` and by one stock `casbin.Enforcer` holding every tenant's rules with
the user's memberships as `g` links; any difference fails the test.
"""

from __future__ import annotations

import random
from pathlib import Path

import casbin
import pytest

from gateway.policy.engine import PolicyEngine
from gateway.policy.matching import act_match, path_match
from gateway.policy.rules import Rule, rule_problems
from gateway.policy.snapshot import parse_snapshot
from gateway.policy.tenants import to_decision

POLICY_DIR = Path(__file__).resolve().parents[2] / "gateway" / "policy" / "data"
MODEL = (POLICY_DIR / "model.conf").read_text("utf-8")
FILE_RULES = (POLICY_DIR / "policy.csv").read_text("utf-8")
# Same semantics, other term order: not the shipped model, so the engine falls back to pycasbin.
REORDERED = MODEL.replace(
    "m = (p.dom == r.dom",
    "m = g(r.sub, p.sub, r.dom) && (p.dom == r.dom",
).replace("&& g(r.sub, p.sub, r.dom) && pathMatch", "&& pathMatch")

TENANTS = [f"t{i}" for i in range(5)]
FILE_ROLES = ["viewer", "editor", "admin", "operator"]
ROLES = [*FILE_ROLES, "custom"]
USERS = [f"u{i}" for i in range(10)]
SEGMENTS = ["api", "v1.0", "a+b", "(x)", "items:batchGet", "x", "xy", "admin", "$ref", "a.b"]
PARAMS = [":id", "{name}"]
ACTS = ["*", "GET", "POST", "DELETE", "GET|HEAD", "POST|PUT|PATCH"]
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
REQUESTS = 1000  # per seed: 3,000 in all


def random_object(rng: random.Random) -> str:
    segments = [
        rng.choice(PARAMS) if rng.random() < 0.2 else rng.choice(SEGMENTS)
        for _ in range(rng.randint(1, 3))
    ]
    prefix = "/.gateway/" if rng.random() < 0.08 else "/"
    return prefix + "/".join(segments) + rng.choice(["", "", "*", "/*"])


def random_rule(rng: random.Random, subjects: list[str], dom: str) -> Rule:
    while True:
        eft = "deny" if rng.random() < 0.35 else "allow"
        act = "*" if eft == "deny" and rng.random() < 0.5 else rng.choice(ACTS)
        rule = Rule(rng.choice(subjects), dom, random_object(rng), act, eft)
        if not rule_problems(rule):
            return rule


def file_rules_text(rng: random.Random) -> str:
    doms = ["*", "*", *TENANTS[:3]]
    rules = [random_rule(rng, FILE_ROLES, rng.choice(doms)) for _ in range(20)]
    return FILE_RULES + "".join(f"{rule}\n" for rule in rules)


def stored_rules(rng: random.Random, tenant: str) -> list[Rule]:
    subjects = ["viewer", "editor", "admin", "custom", *rng.sample(USERS, 3)]
    rules = [random_rule(rng, subjects, tenant) for _ in range(14)]
    return [r for r in rules if not r.obj.startswith("/.gateway")]


def concrete_path(rng: random.Random, obj: str) -> str:
    """A request path near the rule object `obj`: an instance of it, or a near miss."""
    body = obj.rstrip("*")
    parts = [rng.choice(["42", "a.b", "x", ""]) if p in PARAMS else p for p in body.split("/")]
    path = "/".join(parts)
    if obj.endswith("*"):
        path += rng.choice(["", "", "z", "/z/w", "/"])
    mutation = rng.randrange(8)
    if mutation == 0:
        path += "/"
    elif mutation == 1 and len(path) > 1:
        path = path[:-1]
    elif mutation == 2:
        path = path.replace(".", "x").replace("+", "a").replace("(", "")
    elif mutation == 3:
        path += "y"
    elif mutation == 4:
        path = path.removeprefix("/.gateway")
    return path or "/"


def build(seed: int, model_text: str) -> tuple[PolicyEngine, casbin.Enforcer, list[Rule]]:
    rng = random.Random(seed)
    engine = PolicyEngine(parse_snapshot(model_text, file_rules_text(rng)), freeze_gc=False)
    model = casbin.model.Model()
    model.load_model_from_text(model_text)
    stock = casbin.Enforcer(model)
    stock.add_function("pathMatch", path_match)
    stock.add_function("actMatch", act_match)
    every = list(engine.snapshot.rules)
    for tenant in TENANTS:
        rules = stored_rules(rng, tenant)
        engine.set_tenant_rules(tenant, rules)
        every += rules
    stock.add_policies([list(r.as_tuple()) for r in dict.fromkeys(every)])
    return engine, stock, every


def memberships(rng: random.Random, stock: casbin.Enforcer) -> dict[tuple[str, str], list[str]]:
    held = {}
    for user in USERS:
        for tenant in TENANTS:
            roles = rng.sample(ROLES, rng.choice([0, 1, 2, 2]))
            held[user, tenant] = roles
            for role in roles:
                stock.add_role_for_user_in_domain(user, role, tenant)
    return held


def differences(
    engine: PolicyEngine, stock: casbin.Enforcer, rules: list[Rule], seed: int, count: int
) -> tuple[list[str], dict[str, int]]:
    rng = random.Random(seed + 1)
    held = memberships(rng, stock)
    found: list[str] = []
    outcomes: dict[str, int] = {}
    for _ in range(count):
        user, tenant = rng.choice(USERS), rng.choice([*TENANTS, "t_unknown"])
        roles = held.get((user, tenant), [])
        near = [r for r in rules if r.dom in ("*", tenant)] if rng.random() < 0.6 else rules
        path = concrete_path(rng, rng.choice(near).obj)
        method = rng.choice(METHODS)
        allowed, explain = stock.enforce_ex(user, tenant, path, method)
        want = to_decision(bool(allowed), explain, 0)
        got = engine.decide(user, roles, tenant, path, method)
        outcomes[got.reasons[0]] = outcomes.get(got.reasons[0], 0) + 1
        same = (got.allow, got.reasons) == (want.allow, want.reasons)
        if not same or (not got.allow and got.matched_rule != want.matched_rule):
            found.append(f"{user} {roles} {tenant} {method} {path}: got {got} want {want}")
    return found, outcomes


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compiled_engine_decides_like_stock_pycasbin(seed: int) -> None:
    engine, stock, rules = build(seed, MODEL)
    assert engine._state.compilable  # the compiled path is the one under test
    found, outcomes = differences(engine, stock, rules, seed, REQUESTS)
    print(f"seed {seed}: {outcomes}")
    assert not found, f"{len(found)} differences, first ones:\n" + "\n".join(found[:10])
    for reason in ("policy-allow", "policy-deny", "no-matching-rule"):
        assert outcomes.get(reason, 0) > REQUESTS // 40, outcomes  # every outcome is exercised


def test_pycasbin_fallback_for_a_custom_model_decides_like_stock_pycasbin() -> None:
    engine, stock, rules = build(4, REORDERED)
    assert not engine._state.compilable
    found, _ = differences(engine, stock, rules, 4, 500)
    assert not found, f"{len(found)} differences, first ones:\n" + "\n".join(found[:10])
