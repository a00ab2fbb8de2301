"""Policy rules: the value type, the CSV reader, and the one validation every writer shares.

A rule is `p, sub, dom, obj, act, eft`. The same `rule_problems` check is used by the file
loader, `lint`, the tenant rule service (and so the admin API and CLI): a rule it accepts
can be loaded into the model and can match some request.

* `sub`: a role name or a principal id; no whitespace, commas or control characters.
* `dom`: a tenant id, or `*` (every tenant; only in the policy file).
* `obj`: a normalized path pattern (see `gateway.policy.matching`), or `secret:NAME`
  (`NAME` of `[A-Za-z0-9._-]`, optionally ending in `*`) for the secret broker.
* `act`: `*`, `read` (secrets), or HTTP methods joined by `|` (`GET|HEAD`).
* `eft`: `allow` or `deny`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from gateway.policy.matching import RESERVED_PREFIX, is_param_segment

ANY_DOMAIN: Final = "*"
EFFECTS: Final = frozenset({"allow", "deny"})
HTTP_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
SECRET_PREFIX: Final = "secret:"  # noqa: S105 - an object prefix, not a credential
_SECRET = re.compile(r"^secret:[A-Za-z0-9][A-Za-z0-9._-]*\*?$|^secret:\*$")
_NAME = re.compile(r"^[^\s,\x00-\x1f\x7f]+$")
_PATH_CHARS = re.compile(r"^[!$&'()*+,;=:@/%A-Za-z0-9._~{}-]+$")


class PolicyError(Exception):
    """A model or rule set was refused; `problems` lists every reason found."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True, slots=True)
class Rule:
    """One `p` rule. `as_tuple()` is the row handed to Casbin and reported as `matched_rule`."""

    sub: str
    dom: str
    obj: str
    act: str
    eft: str = "allow"

    def as_tuple(self) -> tuple[str, str, str, str, str]:
        return (self.sub, self.dom, self.obj, self.act, self.eft)

    def __str__(self) -> str:
        return "p, " + ", ".join(self.as_tuple())


def _canonical_escape(hex_digits: str) -> bool:
    if not re.fullmatch(r"[0-9A-F]{2}", hex_digits):
        return False
    char = chr(int(hex_digits, 16))
    return not (char.isascii() and (char.isalnum() or char in "-._~"))


def _path_problems(obj: str) -> list[str]:
    if not _PATH_CHARS.match(obj):
        return [f"object {obj!r} has characters a normalized path never contains"]
    body = obj[:-1] if obj.endswith("*") else obj
    if "*" in body:
        return [f"object {obj!r}: '*' is only allowed as the last character"]
    segments = body.split("/")[1:]
    inner = segments[:-1] if body.endswith("/") else segments
    if any(seg in ("", ".", "..") for seg in inner):
        return [f"object {obj!r} can never match: normalized paths have no '//', '.' or '..'"]
    if any(not _canonical_escape(e) for e in re.findall(r"%(.{0,2})", body)):
        return [
            f"object {obj!r} can never match: escapes are '%XX' (upper-case hex) of "
            "characters other than A-Z a-z 0-9 - . _ ~ in normalized paths"
        ]
    bad = [
        s for s in inner if ("{" in s or "}" in s or s.startswith(":")) and not is_param_segment(s)
    ]
    if bad:
        return [f"object {obj!r}: a parameter must be a whole ':name' or '{{name}}' segment"]
    return []


def _object_problems(obj: str, act: str) -> list[str]:
    if obj.startswith(SECRET_PREFIX):
        if not _SECRET.match(obj):
            return [f"object {obj!r} is not 'secret:NAME'"]
        if act not in ("read", "*"):
            return [f"object {obj!r} can never match: secrets only take act 'read'"]
        return []
    if not obj.startswith("/"):
        return [f"object {obj!r} must start with '/' or be 'secret:NAME'"]
    if act == "read":
        return [f"object {obj!r} can never match act 'read' (only secrets are read)"]
    return _path_problems(obj)


def _act_problems(act: str) -> list[str]:
    if act in ("*", "read"):
        return []
    methods = act.split("|")
    unknown = [m for m in methods if m not in HTTP_METHODS]
    if unknown:
        return [f"act {act!r}: unknown method(s) {', '.join(repr(m) for m in unknown)}"]
    if len(set(methods)) != len(methods):
        return [f"act {act!r} repeats a method"]
    return []


def rule_problems(rule: Rule) -> list[str]:
    """Every reason `rule` is invalid or can never match; empty when it is acceptable."""
    problems = []
    for field, value in (("sub", rule.sub), ("dom", rule.dom)):
        if not _NAME.match(value):
            problems.append(f"{field} {value!r} must be non-empty without spaces or commas")
    if rule.eft not in EFFECTS:
        problems.append(f"eft {rule.eft!r} must be 'allow' or 'deny'")
    problems += _act_problems(rule.act)
    problems += _object_problems(rule.obj, rule.act)
    return problems


def tenant_rule_problems(rule: Rule, tenant_id: str) -> list[str]:
    """`rule_problems` plus the limits on a rule a tenant stores for itself."""
    problems = rule_problems(rule)
    # SECURITY: a tenant writes rules only for its own domain, never for `*` or another tenant.
    if rule.dom != tenant_id:
        problems.append(f"dom {rule.dom!r} must be the owning tenant {tenant_id!r}")
    # SECURITY: the gateway's own namespace is granted only by the operator's policy file.
    if rule.obj.startswith(RESERVED_PREFIX):
        problems.append(f"object {rule.obj!r} is reserved for the gateway's policy file")
    return problems


def parse_rule_lines(text: str) -> list[tuple[int, Rule | None, list[str]]]:
    """Each rule line of a Casbin-style CSV text: (line number, the rule or None, problems).

    Lines are `p, sub, dom, obj, act[, eft]` (`eft` defaults to `allow`); `#` starts a comment
    line; fields are trimmed and may be double-quoted. `g` lines are refused: role links come
    from memberships at decision time. A rule is returned only if it has no problems.
    """
    lines = []
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    for row in reader:
        fields = [f.strip() for f in row]
        if not fields or not fields[0] or fields[0].startswith("#"):
            continue
        rule, errors = _row_to_rule(fields)
        lines.append((reader.line_num, rule, errors))
    return lines


def parse_rules(text: str, source: str = "policy") -> tuple[list[Rule], list[str]]:
    """The valid rules of `text` and `source:line: problem` for every line it refused."""
    rules: list[Rule] = []
    problems: list[str] = []
    for line, rule, errors in parse_rule_lines(text):
        problems += [f"{source}:{line}: {e}" for e in errors]
        if rule is not None:
            rules.append(rule)
    return rules, problems


def _row_to_rule(fields: list[str]) -> tuple[Rule | None, list[str]]:
    if fields[0] == "g":
        return None, ["'g' lines are not supported: role links come from memberships"]
    if fields[0] != "p":
        return None, [f"unknown rule type {fields[0]!r} (expected 'p')"]
    if len(fields) not in (5, 6):
        return None, [f"a 'p' rule has 4 or 5 fields after 'p', got {len(fields) - 1}"]
    rule = Rule(*fields[1:])
    errors = rule_problems(rule)
    return (None if errors else rule), errors
