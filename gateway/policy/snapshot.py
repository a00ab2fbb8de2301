"""The file policy as an immutable snapshot, and the builder of small per-tenant enforcers.

`load_snapshot` reads `model.conf` and `policy.csv`, validates both completely (every rule,
and the model by building a throwaway enforcer and running a probe request through the
matcher), and either returns a `PolicySnapshot` or raises `PolicyError` listing every problem.
`lint` uses the same checks, so whatever `lint` accepts also loads.

`build_enforcer` makes the enforcer for one tenant from the rules that apply to it. Rows are
appended straight to the model (the notes' advice: `add_policy` is O(n) per row and pycasbin's
line parser mangles commas); duplicates are dropped first so the row list stays a set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import casbin

from gateway.policy.matching import act_match, path_match
from gateway.policy.rules import ANY_DOMAIN, PolicyError, Rule, parse_rules

REQUEST_TOKENS = ("r_sub", "r_dom", "r_obj", "r_act")
POLICY_TOKENS = ("p_sub", "p_dom", "p_obj", "p_act", "p_eft")
ALLOW_AND_DENY = "some(where (p_eft == allow)) && !some(where (p_eft == deny))"
_PROBE = ("probe-subject", "probe-tenant", "/probe", "GET")


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    """One consistent version of the file policy; never mutated after it is built.

    `role_names` are the subjects the file grants to (the roles): no request subject may
    take one of these names (see `PolicyEngine.decide`), so the file grants to roles; a grant
    to one principal belongs in that tenant's stored rules.
    """

    model_text: str
    rules: tuple[Rule, ...]
    role_names: frozenset[str] = field(default_factory=frozenset)

    def rules_for(self, tenant_id: str) -> list[Rule]:
        """The file rules that apply in `tenant_id`: those for `*` and those naming it."""
        return [r for r in self.rules if r.dom in (ANY_DOMAIN, tenant_id)]


def _new_model(model_text: str) -> casbin.model.Model:
    model = casbin.model.Model()
    model.load_model_from_text(model_text)
    return model


def build_enforcer(model_text: str, rules: Iterable[Rule]) -> casbin.Enforcer:
    """A fresh enforcer over `rules` with the gateway's matching functions registered."""
    model = _new_model(model_text)
    enforcer = casbin.Enforcer(model)
    enforcer.add_function("pathMatch", path_match)
    enforcer.add_function("actMatch", act_match)
    rows = dict.fromkeys(rule.as_tuple() for rule in rules)
    model["p"]["p"].policy.extend(list(row) for row in rows)
    return enforcer


def model_problems(model_text: str) -> list[str]:
    """Every reason `model_text` is not a usable gateway model; empty when it is."""
    try:
        model = _new_model(model_text)
    except Exception as exc:  # casbin raises bare RuntimeError/KeyError/configparser errors
        return [f"model does not parse: {type(exc).__name__}: {exc}"]
    problems = []
    shapes = (("r", "r", REQUEST_TOKENS), ("p", "p", POLICY_TOKENS))
    for sec, key, expected in shapes:
        tokens = tuple(model[sec][key].tokens) if key in model.model.get(sec, {}) else ()
        if tokens != expected:
            problems.append(f"[{sec}] must be {', '.join(t[2:] for t in expected)}")
    if "g" not in model.model.get("g", {}) or len(model["g"]["g"].tokens) != 3:
        problems.append("[role_definition] must be 'g = _, _, _' (user, role, tenant)")
    if "e" not in model.model.get("e", {}) or model["e"]["e"].value != ALLOW_AND_DENY:
        problems.append("[policy_effect] must be allow-and-deny (deny wins)")
    return problems or _probe_problems(model_text)


def _probe_problems(model_text: str) -> list[str]:
    """Runs one request through the matcher, catching unknown functions and bad syntax."""
    try:
        enforcer = build_enforcer(model_text, [Rule("viewer", "*", "/*", "GET")])
        enforcer.get_role_manager().add_link(_PROBE[0], "viewer", _PROBE[1])
        if not enforcer.enforce(*_PROBE):
            return ["model denies a request that 'p, viewer, *, /*, GET, allow' must allow"]
    except Exception as exc:  # any failure of the matcher is a model problem
        return [f"matcher fails: {type(exc).__name__}: {exc}"]
    return []


def parse_snapshot(model_text: str, rules_text: str, source: str = "policy.csv") -> PolicySnapshot:
    """A validated snapshot of the two texts, or `PolicyError` with every problem."""
    problems = model_problems(model_text)
    rules, rule_errors = parse_rules(rules_text, source)
    problems += rule_errors
    if problems:
        raise PolicyError(problems)
    names = frozenset(r.sub for r in rules)
    return PolicySnapshot(model_text, tuple(dict.fromkeys(rules)), names)


def load_snapshot(model_path: Path, rules_path: Path) -> PolicySnapshot:
    """`parse_snapshot` over two files; an unreadable file is a `PolicyError` too."""
    try:
        model_text = model_path.read_text("utf-8")
        rules_text = rules_path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([f"cannot read policy files: {exc}"]) from exc
    return parse_snapshot(model_text, rules_text, rules_path.name)


def tenant_rule_rows(
    snapshot: PolicySnapshot, stored: Sequence[Rule], tenant_id: str
) -> list[Rule]:
    """The rules of one tenant's enforcer: the file's that apply to it plus its stored ones.

    Stored rules of another domain are dropped, whatever the store returned.
    """
    # SECURITY: defense in depth -- a rule row never leaks across tenants even if a store errs.
    own = [r for r in stored if r.dom == tenant_id]
    return snapshot.rules_for(tenant_id) + own
