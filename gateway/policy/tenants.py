"""One tenant's enforcer, the role links applied to it, and the bounded maps around it.

Guarantees:

* a `TenantEnforcer` holds only the rules of one tenant (the file's `*` rules, the file's rules
  naming the tenant, and the tenant's stored rules), so an `enforce()` scans a handful of rows
  however many tenants exist;
* with the shipped model it decides through a `CompiledPolicy` (an index, no matcher scan, no
  per-subject state): the roles of a call are exactly the roles it passes;
* with any other model, `enforce(subject, roles, ...)` first makes the pycasbin enforcer's role
  links for `subject` exactly `roles` (added and removed as needed), then decides: a role
  change applies at once; at most `max_subjects` subjects have links at a time: past that the
  role manager is cleared and links are re-applied on demand, bounding the Role objects
  pycasbin keeps per name;
* `LruMap` never holds more than its bound.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Generic, TypeVar

import casbin

from gateway.pipeline.reasons import Decision
from gateway.policy.compiled import CompiledPolicy
from gateway.policy.rules import Rule
from gateway.policy.snapshot import build_enforcer

K = TypeVar("K")
V = TypeVar("V")

ALLOW = "policy-allow"
DENY = "policy-deny"
NO_MATCH = "no-matching-rule"
ERROR = "policy-error"


def error_decision(version: int) -> Decision:
    """The fail-closed decision for any engine failure (mapped to 503 by the pipeline)."""
    return Decision(False, (ERROR,), None, version)


def to_decision(allowed: bool, rule: Sequence[str], version: int) -> Decision:
    """The `Decision` for an `enforce_ex` result; `matched_rule` is the deciding rule."""
    if allowed and rule:
        return Decision(True, (ALLOW,), tuple(rule), version)
    if rule and rule[4] == "deny":
        return Decision(False, (DENY,), tuple(rule), version)
    return Decision(False, (NO_MATCH,), None, version)


class LruMap(Generic[K, V]):
    """A dict holding at most `limit` entries; the least recently used one goes first."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.limit:
            self._data.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)

    def items(self) -> list[tuple[K, V]]:
        """A copy of the entries, least recently used first."""
        return list(self._data.items())

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


class TenantEnforcer:
    """The decider of one tenant; `rules` are exactly the rows it was built from.

    With `compiled` (the shipped model: see `gateway.policy.compiled`) it decides through a
    `CompiledPolicy` and never builds a pycasbin enforcer; otherwise through pycasbin with
    role links applied per call. Both give the same allow/deny.
    """

    def __init__(
        self,
        tenant_id: str,
        model_text: str,
        rules: Sequence[Rule],
        max_subjects: int,
        *,
        compiled: CompiledPolicy | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.rules = tuple(rules)
        self.max_subjects = max(1, max_subjects)
        self.compiled = compiled
        self._enforcer: casbin.Enforcer | None = None
        if compiled is None:
            self._enforcer = build_enforcer(model_text, rules)
        self._applied: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()

    @property
    def subject_count(self) -> int:
        """Subjects with role links in the pycasbin enforcer (always 0 when compiled)."""
        return len(self._applied)

    def enforce(
        self, subject: str, roles: Sequence[str], obj: str, act: str
    ) -> tuple[bool, list[str]]:
        """`enforce_ex` for `subject` holding exactly `roles` in this tenant."""
        if self.compiled is not None:
            allowed, row = self.compiled.decide(subject, roles, obj, act)
            return allowed, list(row) if row is not None else []
        # The lock keeps "set links, then enforce" atomic if a thread (CLI, tests) shares it;
        # on the event loop it is never contended.
        enforcer = self._enforcer
        if enforcer is None:  # unreachable: built whenever `compiled` is None
            raise RuntimeError("tenant enforcer has neither a compiled policy nor casbin")
        with self._lock:
            self._apply_roles(enforcer, subject, frozenset(roles))
            allowed, rule = enforcer.enforce_ex(subject, self.tenant_id, obj, act)
            return bool(allowed), list(rule)

    def _apply_roles(self, enforcer: casbin.Enforcer, subject: str, roles: frozenset[str]) -> None:
        current = self._applied.get(subject)
        if current == roles:
            return
        manager = enforcer.get_role_manager()
        if current is None and len(self._applied) >= self.max_subjects:
            manager.clear()
            self._applied.clear()
        for role in (current or frozenset()) - roles:
            manager.delete_link(subject, role, self.tenant_id)
        for role in roles - (current or frozenset()):
            manager.add_link(subject, role, self.tenant_id)
        self._applied[subject] = roles
