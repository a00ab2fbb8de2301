"""The decision-table runner behind `gateway policy test`: YAML cases under `policy/tests/`.

A case file is a mapping with optional `rules:` and required `cases:`:

```yaml
rules:                      # extra tenant rules, as stored rules of the named tenant
  - "p, editor, t_acme, /reports/*, DELETE, deny"
  - {sub: viewer, tenant: t_acme, obj: /metrics, act: POST}     # eft defaults to allow
cases:
  - {sub: u_1, roles: [viewer], tenant: t_acme, path: /x, method: GET, expect: allow}
  - {sub: u_1, roles: [viewer], tenant: t_acme, path: /x, method: POST, allow: false}
  - {name: "...", sub: ..., roles: [...], tenant: ..., path: ..., method: ..., expect: deny,
     reason: policy-deny}   # optional: also check the decision's reason
```

Each file runs on a fresh engine over the given model and policy files. `run_cases` returns
only the mismatches, including files or cases that cannot be read; empty means all passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.pipeline.reasons import Decision
from gateway.policy.engine import PolicyEngine
from gateway.policy.rules import PolicyError, Rule, parse_rules
from gateway.policy.snapshot import PolicySnapshot, load_snapshot

_CASE_KEYS = ("sub", "tenant", "path", "method")


def _expectation(case: Any) -> str:
    """`expect: allow|deny`, or the equivalent `allow: true|false`; "" when neither."""
    if not isinstance(case, dict):
        return ""
    if isinstance(case.get("allow"), bool) and "expect" not in case:
        return "allow" if case["allow"] else "deny"
    return str(case.get("expect", ""))


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One mismatch: where the case is, what it expected, and what the engine decided."""

    file: str
    index: int
    name: str
    expected: str
    decision: Decision | None = None
    error: str = ""

    def __str__(self) -> str:
        where = f"{self.file} case {self.index}" + (f" ({self.name})" if self.name else "")
        if self.error:
            return f"{where}: {self.error}"
        assert self.decision is not None
        got = "allow" if self.decision.allow else "deny"
        reasons = ", ".join(self.decision.reasons)
        return f"{where}: expected {self.expected}, got {got} ({reasons})"


def run_cases(
    directory: Path, model_path: Path | None = None, rules_path: Path | None = None
) -> list[CaseResult]:
    """Runs every `*.yaml` file in `directory`; the mismatches and errors, in file order.

    The model and policy default to `model.conf` and `policy.csv` in `directory`'s parent.
    """
    model_path = model_path or directory.parent / "model.conf"
    rules_path = rules_path or directory.parent / "policy.csv"
    try:
        snapshot = load_snapshot(model_path, rules_path)
    except PolicyError as exc:
        return [CaseResult(str(rules_path), 0, "", "", error=str(exc))]
    results: list[CaseResult] = []
    for path in sorted(directory.glob("*.yaml")):
        results += _run_file(path, snapshot)
    return results


def _run_file(path: Path, snapshot: PolicySnapshot) -> list[CaseResult]:
    try:
        doc = yaml.safe_load(path.read_text("utf-8")) or {}
        if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list):
            raise ValueError("a case file is a mapping with a 'cases' list")
        engine = PolicyEngine(snapshot, freeze_gc=False)
        for tenant_id, rules in _tenant_rules(doc.get("rules") or []).items():
            engine.set_tenant_rules(tenant_id, rules)
    except (OSError, ValueError, TypeError, yaml.YAMLError, PolicyError) as exc:
        return [CaseResult(path.name, 0, "", "", error=str(exc))]
    results = []
    for index, case in enumerate(doc["cases"], start=1):
        result = _run_case(engine, path.name, index, case)
        if result is not None:
            results.append(result)
    return results


def _tenant_rules(entries: list[Any]) -> dict[str, list[Rule]]:
    """The extra rules grouped by tenant; `ValueError` for one that does not parse."""
    by_tenant: dict[str, list[Rule]] = {}
    for entry in entries:
        if isinstance(entry, dict):
            tenant = entry.get("tenant", entry.get("dom"))
            sub, dom, obj, act = (
                str(v) for v in (entry.get("sub"), tenant, entry.get("obj"), entry.get("act"))
            )
            rule = Rule(sub, dom, obj, act, str(entry.get("eft", "allow")))
        else:
            parsed, problems = parse_rules(str(entry), "rules")
            if problems or len(parsed) != 1:
                raise ValueError(f"rule {entry!r}: {'; '.join(problems) or 'not one rule'}")
            rule = parsed[0]
        by_tenant.setdefault(rule.dom, []).append(rule)
    return by_tenant


def _run_case(engine: PolicyEngine, file: str, index: int, case: Any) -> CaseResult | None:
    name = str(case.get("name", "")) if isinstance(case, dict) else ""
    missing = [k for k in _CASE_KEYS if not isinstance(case, dict) or k not in case]
    expected = _expectation(case)
    if missing or expected not in ("allow", "deny"):
        problem = (
            f"missing {', '.join(missing)}"
            if missing
            else "give `expect: allow|deny` or `allow: true|false`"
        )
        return CaseResult(file, index, name, expected, error=f"bad case: {problem}")
    roles = case.get("roles") or []
    decision = engine.decide(
        str(case["sub"]), tuple(map(str, roles)), str(case["tenant"]), case["path"], case["method"]
    )
    ok = decision.allow == (expected == "allow")
    if ok and "reason" in case:
        ok = case["reason"] in decision.reasons
    return None if ok else CaseResult(file, index, name, expected, decision)
