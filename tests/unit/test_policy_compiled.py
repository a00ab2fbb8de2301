"""The compiled decision path: model detection, matcher equivalence, effect order, sharing."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from gateway.policy.compiled import CompiledPolicy, DomainIndex, _path_test, is_shipped_model
from gateway.policy.engine import EngineLimits, PolicyEngine
from gateway.policy.matching import path_match
from gateway.policy.rules import Rule
from gateway.policy.snapshot import parse_snapshot

DATA = Path(__file__).resolve().parents[2] / "gateway" / "policy" / "data"
MODEL = (DATA / "model.conf").read_text("utf-8")
RULES = (DATA / "policy.csv").read_text("utf-8")


def test_the_shipped_model_is_recognised_whatever_its_spacing_and_comments() -> None:
    assert is_shipped_model(MODEL)
    spaced = MODEL.replace("&& g(", "&&   g(").replace("# Request:", "# a changed comment")
    assert is_shipped_model(spaced)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("pathMatch(r.obj, p.obj)", "keyMatch2(r.obj, p.obj)"),
        ('p.dom == "*"', 'p.dom == "* "'),
        ("!some(where (p.eft == deny))", "!some(where (p.eft == allow))"),
        ("g = _, _, _", "g = _, _, _\ng2 = _, _"),
        ("[matchers]", "[matchers]\nm2 = true"),
    ],
)
def test_any_other_model_is_not_compiled(old: str, new: str) -> None:
    assert old in MODEL
    assert not is_shipped_model(MODEL.replace(old, new))


def test_an_unparsable_model_is_not_compiled() -> None:
    assert not is_shipped_model("not a model")


PATTERNS = ["/a", "/a/*", "/a*", "/*", "/a.b/:id", "/a/{n}/*", "/x+(y)", "secret:db*", "/a/:id*"]
PATHS = ["/a", "/a/", "/ab", "/a/b", "/a/b/c", "/", "", "/a.b/1", "/axb/1", "/a.b/1/2"]
PATHS += ["/x+(y)", "/xx(y)", "secret:db1", "/a/7/", "/a/7", "/a/\n", "/a/7\n"]


def test_compiled_path_tests_equal_path_match() -> None:
    for pattern, path in itertools.product(PATTERNS, PATHS):
        assert bool(_path_test(pattern)(path)) is path_match(path, pattern), (pattern, path)


def test_the_first_deny_in_row_order_decides_whichever_subject_it_names() -> None:
    rules = [
        Rule("viewer", "t", "/*", "*"),
        Rule("editor", "t", "/b/*", "*", "deny"),
        Rule("u_1", "t", "/b/1", "GET", "deny"),
    ]
    policy = CompiledPolicy(rules)
    assert policy.decide("u_1", ["viewer", "editor"], "/b/1", "GET") == (False, rules[1].as_tuple())
    assert policy.decide("u_1", ["viewer"], "/b/1", "GET") == (False, rules[2].as_tuple())
    assert policy.decide("u_1", ["viewer"], "/b/1", "POST") == (True, rules[0].as_tuple())
    assert policy.decide("u_2", [], "/b/1", "GET") == (False, None)


def test_links_are_exactly_the_roles_passed() -> None:
    policy = CompiledPolicy([Rule("custom", "t", "/*", "*"), Rule("u_2", "t", "/x", "GET")])
    assert policy.decide("u_1", ["custom"], "/q", "GET")[0]
    assert not policy.decide("u_1", [], "/q", "GET")[0]
    assert policy.decide("u_1", ["u_2"], "/x", "GET")[0]  # as pycasbin's g(u_1, u_2)
    assert not policy.decide("u_1", ["u_2"], "/y", "GET")[0]


def test_wildcards_never_reach_the_reserved_namespace() -> None:
    policy = CompiledPolicy([Rule("admin", "*", "/*", "*"), Rule("op", "*", "/.gateway/*", "*")])
    assert not policy.decide("u", ["admin"], "/.gateway/admin", "GET")[0]
    assert not policy.decide("u", ["admin"], "/.gateway", "GET")[0]
    assert policy.decide("u", ["admin"], "/.gatewayx", "GET")[0]
    assert policy.decide("u", ["op"], "/.gateway/admin", "GET")[0]


def test_domain_index_equals_the_snapshot_scan() -> None:
    text = RULES + "p, viewer, t_a, /a, GET\np, viewer, t_b, /b, GET\np, editor, *, /c, GET\n"
    snapshot = parse_snapshot(MODEL, text)
    index = DomainIndex(snapshot.rules)
    for tenant in ("t_a", "t_b", "t_c", "*"):
        assert index.rules_for(tenant) == snapshot.rules_for(tenant)
    assert index.names("t_a")
    assert not index.names("t_c")
    assert not index.names("*")


def test_tenants_without_rules_of_their_own_share_one_compiled_policy() -> None:
    engine = PolicyEngine(parse_snapshot(MODEL, RULES), freeze_gc=False)
    engine.set_tenant_rules("t_own", [Rule("viewer", "t_own", "/x", "POST")])
    for tenant in ("t_1", "t_2", "t_own"):
        assert engine.decide("u", ["viewer"], tenant, "/x", "GET").allow
    one, two, own = (engine.tenant_enforcer(t) for t in ("t_1", "t_2", "t_own"))
    assert one is not None and two is not None and own is not None
    assert one.compiled is not None and one.compiled is two.compiled
    assert own.compiled is not one.compiled
    assert one._enforcer is None  # no pycasbin enforcer is built on the compiled path


def test_a_custom_model_decides_through_pycasbin() -> None:
    custom = MODEL.replace("&& pathMatch(r.obj, p.obj)", "&& pathMatch(r.obj, p.obj) && 1 == 1")
    engine = PolicyEngine(parse_snapshot(custom, RULES), freeze_gc=False)
    assert engine.decide("u", ["viewer"], "t", "/x", "GET").allow
    assert not engine.decide("u", ["viewer"], "t", "/x", "POST").allow
    tenant = engine.tenant_enforcer("t")
    assert tenant is not None and tenant.compiled is None and tenant.subject_count == 1


def test_the_decision_cache_drops_its_oldest_entries_first() -> None:
    limits = EngineLimits(max_decisions=3)
    engine = PolicyEngine(parse_snapshot(MODEL, RULES), limits=limits, freeze_gc=False)
    for i in range(5):
        engine.decide("u", ["viewer"], "t", f"/p/{i}", "GET")
    assert [key[4] for key in engine._state.decisions] == ["/p/2", "/p/3", "/p/4"]


def test_the_policy_benchmark_agrees_with_stock_pycasbin_on_a_small_size() -> None:
    from bench.policy import run_size, table

    result = run_size(rules=300, tenants=5, requests=200, stock_n=100)
    assert result["wrong"] == 0
    assert result["uncached"]["n"] == 200
    assert result["stock"]["n"] == 100
    assert "| 300 | 5 |" in table([result])
