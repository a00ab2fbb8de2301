"""Policy-author tools behind `gateway policy lint` and `gateway policy check`.

`lint` reports every problem of a model and rule file without loading them into a running
gateway: what it accepts, `load_snapshot` accepts. `check` decides one request and explains
it in one line per fact, as the CLI prints it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.pipeline.reasons import Decision
from gateway.policy.engine import PolicyEngine
from gateway.policy.matching import RESERVED_PREFIX, act_match, is_param_segment, path_match
from gateway.policy.rules import ANY_DOMAIN, Rule, parse_rule_lines
from gateway.policy.snapshot import model_problems


def lint(model_path: Path, rules_path: Path) -> list[str]:
    """Every problem of the two files, as `file:line: message`; empty when they are clean.

    Finds: model parse errors and a wrong model shape, rules with the wrong arity, an unknown
    type or effect, bad or never-matching objects and actions, duplicate rules, and allow
    rules that a deny rule of the same subject completely shadows.
    """
    try:
        model_text = model_path.read_text("utf-8")
        rules_text = rules_path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [f"cannot read policy files: {exc}"]
    problems = [f"{model_path.name}: {p}" for p in model_problems(model_text)]
    lines = parse_rule_lines(rules_text)
    problems += [f"{rules_path.name}:{n}: {e}" for n, _, errors in lines for e in errors]
    valid = [(n, rule) for n, rule, _ in lines if rule is not None]
    problems += [f"{rules_path.name}:{p}" for p in _duplicates(valid) + _shadowed(valid)]
    return problems


def _duplicates(rules: Sequence[tuple[int, Rule]]) -> list[str]:
    first: dict[Rule, int] = {}
    problems = []
    for line, rule in rules:
        if rule in first:
            problems.append(f"{line}: duplicate of the rule on line {first[rule]}")
        first.setdefault(rule, line)
    return problems


def _shadowed(rules: Sequence[tuple[int, Rule]]) -> list[str]:
    denies = [(n, r) for n, r in rules if r.eft == "deny"]
    problems = []
    for line, rule in rules:
        if rule.eft != "allow":
            continue
        for deny_line, deny in denies:
            if rule_covers(deny, rule):
                problems.append(f"{line}: never allows: shadowed by the deny on line {deny_line}")
                break
    return problems


def rule_covers(general: Rule, specific: Rule) -> bool:
    """True when every request `specific` matches is also matched by `general`.

    Conservative: `False` whenever coverage cannot be shown simply (e.g. parameters).
    """
    if general.sub != specific.sub or general.dom not in (ANY_DOMAIN, specific.dom):
        return False
    return _act_covers(general.act, specific.act) and _obj_covers(general.obj, specific.obj)


def _act_covers(general: str, specific: str) -> bool:
    if general == "*":
        return True
    return specific != "*" and set(specific.split("|")) <= set(general.split("|"))


def _obj_covers(general: str, specific: str) -> bool:
    if general == specific:
        return True
    if any(is_param_segment(s) for s in (general + "/" + specific).split("/")):
        return False
    if specific.startswith(RESERVED_PREFIX) and not general.startswith(RESERVED_PREFIX):
        return False
    if not general.endswith("*"):
        return False
    prefix = general[:-1]
    if specific.endswith("*"):
        return specific[:-1].startswith(prefix)
    return specific.startswith(prefix) or (prefix.endswith("/") and specific == prefix[:-1])


def check(
    engine: PolicyEngine,
    subject: str,
    roles: Sequence[str],
    tenant_id: str,
    path: str,
    method: str,
) -> tuple[Decision, str]:
    """The decision for one request and a multi-line explanation of it.

    With a rule store, load the tenant first (`await engine.ensure_tenant(tenant_id)`).
    """
    decision = engine.decide(subject, roles, tenant_id, path, method)
    verdict = "allow" if decision.allow else "deny"
    lines = [
        f"{verdict} ({', '.join(decision.reasons)}) at policy version {decision.policy_version}"
    ]
    if decision.matched_rule:
        lines.append("decided by: p, " + ", ".join(decision.matched_rule))
    lines.append(
        f"request: {subject} with roles [{', '.join(roles)}] in {tenant_id}: {method} {path}"
    )
    matching = _matching_rules(engine, subject, roles, tenant_id, path, method)
    lines.append("rules matching the request:" if matching else "no rule matches the request")
    lines += [f"  {rule}" for rule in matching]
    return decision, "\n".join(lines)


def _matching_rules(
    engine: PolicyEngine, subject: str, roles: Sequence[str], tenant_id: str, path: str, act: str
) -> list[Rule]:
    """The tenant's rules that match the request under the shipped model's semantics."""
    tenant = engine.tenant_enforcer(tenant_id)
    rules = tenant.rules if tenant is not None else tuple(engine.snapshot.rules_for(tenant_id))
    subjects = {subject, *roles}
    return [
        r for r in rules if r.sub in subjects and act_match(act, r.act) and path_match(path, r.obj)
    ]
