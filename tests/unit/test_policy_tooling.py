"""lint, check and the YAML decision-table runner over the shipped policy."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from gateway.policy.cases import run_cases
from gateway.policy.engine import PolicyEngine
from gateway.policy.rules import Rule
from gateway.policy.tooling import check, lint, rule_covers

POLICY_DIR = Path(__file__).resolve().parents[2] / "policy"


def test_shipped_policy_is_lint_clean() -> None:
    assert lint(POLICY_DIR / "model.conf", POLICY_DIR / "policy.csv") == []


def test_shipped_decision_tables_pass() -> None:
    assert [str(r) for r in run_cases(POLICY_DIR / "tests")] == []


def test_shipped_defaults_table_is_substantial() -> None:
    text = (POLICY_DIR / "tests" / "defaults.yaml").read_text()
    assert text.count("expect:") >= 20


def test_lint_finds_every_kind_of_problem(tmp_path: Path) -> None:
    rules = tmp_path / "policy.csv"
    rules.write_text(
        "p, viewer, *, /*, GET, allow\n"  # 1 ok
        "p, viewer, *, /*, GET, allow\n"  # 2 duplicate
        "p, viewer, *\n"  # 3 arity
        "p, viewer, *, /x, GET, perhaps\n"  # 4 eft
        "p, viewer, *, x/y, GET, allow\n"  # 5 bad path
        "p, viewer, *, /a//b, GET, allow\n"  # 6 never matches
        "p, editor, *, /admin/*, POST, deny\n"  # 7
        "p, editor, *, /admin/users, POST, allow\n"  # 8 shadowed by 7
        "g, u_1, viewer, *\n"  # 9 role links are not file rules
    )
    problems = lint(POLICY_DIR / "model.conf", rules)
    lines = sorted({int(p.split(":")[1]) for p in problems})
    assert lines == [2, 3, 4, 5, 6, 8, 9]
    assert any("duplicate" in p for p in problems)
    assert any("shadowed by the deny on line 7" in p for p in problems)


def test_lint_reports_a_broken_model(tmp_path: Path) -> None:
    model = tmp_path / "model.conf"
    text = (POLICY_DIR / "model.conf").read_text().replace("pathMatch", "noSuchMatch")
    model.write_text(text)
    problems = lint(model, POLICY_DIR / "policy.csv")
    assert problems
    assert "matcher fails" in problems[0]
    model.write_text("[request_definition]\nr = sub, obj, act\n")
    assert lint(model, POLICY_DIR / "policy.csv")


@pytest.mark.parametrize(
    ("general", "specific", "covers"),
    [
        (("/admin/*", "POST"), ("/admin/x", "POST"), True),
        (("/admin/*", "POST"), ("/admin", "POST"), True),
        (("/admin/*", "POST"), ("/administrator", "POST"), False),
        (("/admin/*", "POST"), ("/admin*", "POST"), False),
        (("/admin/*", "*"), ("/admin/x/*", "GET|POST"), True),
        (("/admin/*", "POST"), ("/admin/x", "*"), False),
        (("/*", "*"), ("/.gateway/admin/*", "GET"), False),
        (("/users/:id", "*"), ("/users/1", "GET"), False),
    ],
)
def test_rule_covers(general: tuple[str, str], specific: tuple[str, str], covers: bool) -> None:
    g = Rule("editor", "*", general[0], general[1], "deny")
    s = Rule("editor", "t_1", specific[0], specific[1], "allow")
    assert rule_covers(g, s) is covers


def test_check_explains_the_decision() -> None:
    engine = PolicyEngine.from_files(
        POLICY_DIR / "model.conf", POLICY_DIR / "policy.csv", freeze_gc=False
    )
    decision, text = check(engine, "u_1", ("editor",), "t_a", "/admin/x", "POST")
    assert not decision.allow
    assert text.splitlines()[0].startswith("deny (policy-deny)")
    assert "decided by: p, editor, *, /admin/*, POST|PUT|PATCH|DELETE, deny" in text
    assert "p, editor, *, /*, *, allow" in text  # the allow it beat is listed too
    decision, text = check(engine, "u_1", (), "t_a", "/x", "GET")
    assert "no rule matches" in text


def test_runner_reports_a_deliberate_mismatch(tmp_path: Path) -> None:
    cases = tmp_path / "tests"
    cases.mkdir()
    (cases / "wrong.yaml").write_text(
        "rules:\n  - 'p, viewer, t_a, /x, POST, deny'\n"
        "cases:\n"
        "  - {sub: u_1, roles: [viewer], tenant: t_a, path: /x, method: GET, expect: allow}\n"
        "  - {name: oops, sub: u_1, roles: [viewer], tenant: t_a, path: /x, method: POST,"
        " expect: allow}\n"
        "  - {sub: u_1, roles: [editor], tenant: t_a, path: /admin/x, method: POST,"
        " expect: deny, reason: no-matching-rule}\n"
        "  - {sub: u_1, tenant: t_a}\n"
    )
    (cases / "broken.yaml").write_text("cases: [\n")
    results = run_cases(cases, POLICY_DIR / "model.conf", POLICY_DIR / "policy.csv")
    text = [str(r) for r in results]
    assert len(results) == 4
    assert results[0].file == "broken.yaml"
    assert "wrong.yaml case 2 (oops): expected allow, got deny (policy-deny)" in text
    assert any("case 3" in t and "policy-deny" in t for t in text)
    assert any("case 4" in t and "missing" in t for t in text)


def test_decide_cost_cached_vs_uncached(capsys: pytest.CaptureFixture[str]) -> None:
    """A micro-benchmark print, not an assertion on time."""
    engine = PolicyEngine.from_files(
        POLICY_DIR / "model.conf", POLICY_DIR / "policy.csv", freeze_gc=False
    )
    n = 2000
    start = time.perf_counter()
    for i in range(n):
        engine.decide("u_1", ("editor",), "t_a", f"/docs/{i}", "POST")
    uncached = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for i in range(n):
        engine.decide("u_1", ("editor",), "t_a", f"/docs/{i}", "POST")
    cached = (time.perf_counter() - start) / n
    with capsys.disabled():
        print(f"\ndecide(): uncached {uncached * 1e6:.1f} µs, cached {cached * 1e6:.2f} µs")
    assert engine.decide("u_1", ("editor",), "t_a", "/docs/1", "POST").allow


def test_a_copy_of_the_policy_dir_runs_with_default_paths(tmp_path: Path) -> None:
    shutil.copytree(POLICY_DIR, tmp_path / "policy")
    assert run_cases(tmp_path / "policy" / "tests") == []
