"""Rule validation shared by the file loader, lint and the tenant rule service."""

from __future__ import annotations

import pytest

from gateway.policy.rules import PolicyError, Rule, parse_rules, rule_problems, tenant_rule_problems
from gateway.policy.service import MAX_TENANT_RULES, rules_for_tenant


@pytest.mark.parametrize(
    "rule",
    [
        Rule("viewer", "*", "/*", "GET|HEAD"),
        Rule("u_1", "t_1", "/users/:id", "PUT", "deny"),
        Rule("u_1", "t_1", "secret:db-password", "read"),
        Rule("admin", "t_1", "/caf%C3%A9/x", "*"),
        Rule("admin", "t_1", "/", "GET"),
    ],
)
def test_valid_rules_have_no_problems(rule: Rule) -> None:
    assert rule_problems(rule) == []


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        (Rule("", "*", "/*", "GET"), "sub"),
        (Rule("a b", "*", "/*", "GET"), "sub"),
        (Rule("viewer", "*", "/*", "GET", "maybe"), "eft"),
        (Rule("viewer", "*", "/*", "FETCH"), "unknown method"),
        (Rule("viewer", "*", "/*", "GET|GET"), "repeats"),
        (Rule("viewer", "*", "api/*", "GET"), "must start with '/'"),
        (Rule("viewer", "*", "/a/*/b", "GET"), "last character"),
        (Rule("viewer", "*", "/a//b", "GET"), "never match"),
        (Rule("viewer", "*", "/a/../b", "GET"), "never match"),
        (Rule("viewer", "*", "/%7euser", "GET"), "never match"),
        (Rule("viewer", "*", "/%2f", "GET"), "never match"),
        (Rule("viewer", "*", "/a b", "GET"), "characters"),
        (Rule("viewer", "*", "/x/{id", "GET"), "parameter"),
        (Rule("viewer", "*", "secret:a/b", "read"), "secret:NAME"),
        (Rule("viewer", "*", "secret:db", "GET"), "only take act 'read'"),
        (Rule("viewer", "*", "/x", "read"), "only secrets"),
    ],
)
def test_invalid_rules_are_reported(rule: Rule, fragment: str) -> None:
    problems = rule_problems(rule)
    assert problems
    assert fragment in " ".join(problems)


def test_tenant_rules_are_confined_to_their_tenant() -> None:
    assert tenant_rule_problems(Rule("editor", "t_1", "/x", "GET"), "t_1") == []
    for dom in ("*", "t_2"):
        assert any(
            "owning tenant" in p for p in tenant_rule_problems(Rule("e", dom, "/x", "GET"), "t_1")
        )
    assert tenant_rule_problems(Rule("e", "t_1", "/.gateway/admin/*", "*"), "t_1")


def test_rules_for_tenant_sets_missing_domain_and_refuses_foreign_ones() -> None:
    owned = rules_for_tenant("t_1", [Rule("e", "", "/x", "GET"), Rule("e", "", "/x", "GET")])
    assert owned == [Rule("e", "t_1", "/x", "GET")]
    with pytest.raises(PolicyError, match="owning tenant"):
        rules_for_tenant("t_1", [Rule("e", "*", "/x", "GET")])
    too_many = [Rule("e", "", f"/r{i}", "GET") for i in range(MAX_TENANT_RULES + 1)]
    with pytest.raises(PolicyError, match="at most"):
        rules_for_tenant("t_1", too_many)


def test_parse_rules_reports_lines_and_keeps_valid_rules() -> None:
    text = "# comment\n\np, viewer, *, /*, GET\ng, u, viewer, *\np, a, b\nq, x, *, /, GET\n"
    rules, problems = parse_rules(text, "f.csv")
    assert rules == [Rule("viewer", "*", "/*", "GET", "allow")]
    assert [p.split(":")[1] for p in problems] == ["4", "5", "6"]


def test_quoted_fields_may_hold_commas() -> None:
    rules, problems = parse_rules('p, viewer, *, "/a,b", GET\n')
    assert problems == []
    assert rules[0].obj == "/a,b"
