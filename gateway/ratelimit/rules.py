"""Configured rate-limit rules, compiled into matchers and per-request bucket keys.

Which rules apply to a request: the global `rate_limits.rules`, the matched route's
`rate_limits`, and `rate_limits.plans[plan]` for the principal's tenant's plan, each only
when its path pattern (on the normalized path) and methods match and every part of its key
is known for the request. A rule keyed on `user` does not apply to an anonymous request.

Bucket keys are `<origin>/<rule name>:<part>=<value>|...`, where the origin (`g`, `r.<route>`,
`p.<plan>`) keeps equally named rules of different lists apart. Values that are long or
contain unusual characters are replaced by a truncated SHA-256, so keys stay bounded and
never carry raw emails or tokens.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.config.routes import RateKey, RateLimitRule, Upstream
from gateway.config.sections import RateLimitsConfig
from gateway.pipeline.memo import MEMO_MAX_KEY, pure_memo
from gateway.pipeline.paths import PathPattern, compile_pattern
from gateway.pipeline.scope import RequestScope
from gateway.proxy.clientip import rate_limit_key_ip
from gateway.ratelimit.gcra import window_seconds

_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")


@functools.lru_cache(maxsize=16_384)
def key_value(value: str) -> str:
    """`value` itself when short and plain, else `h.` + 32 hex digits of its SHA-256."""
    if _SAFE_VALUE.fullmatch(value):
        return value
    return "h." + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def key_part(part: RateKey, scope: RequestScope) -> str | None:
    """The request's value for one key part, or None when the request has none."""
    principal = scope.principal
    if part == "ip":
        # SECURITY: client_ip is the trusted-proxy-resolved address, never a raw header;
        # IPv6 is keyed per /64 so rotating addresses inside one subscriber's net is useless.
        return rate_limit_key_ip(scope.client_ip) if scope.client_ip else None
    if part == "route":
        return scope.route.name if scope.route is not None else None
    if principal is None:
        return None
    if part == "user":
        return principal.id
    if part == "tenant":
        return principal.tenant.id
    return principal.key_id


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One rule ready to match: `name` is shown to clients, `bucket` prefixes its keys."""

    name: str
    bucket: str
    path: PathPattern
    methods: frozenset[str]
    key: tuple[RateKey, ...]
    per_second: float
    burst: int
    window: int = field(init=False)
    """Whole seconds in which an idle bucket refills `burst` requests (≥ 1)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", window_seconds(self.burst, self.per_second))

    def matches(self, method: str, path: str) -> bool:
        """True for a request this rule counts (path normalized, method upper-case)."""
        return (not self.methods or method in self.methods) and self.path(path)

    def key_for(self, scope: RequestScope) -> str | None:
        """The bucket key for this request, or None when a key part is unknown."""
        parts = []
        for part in self.key:
            value = key_part(part, scope)
            if value is None:
                return None
            parts.append(f"{part}={key_value(value)}")
        return f"{self.bucket}:{'|'.join(parts)}"


class AppliedRule(NamedTuple):
    """A rule that applies to one request, with that request's bucket key."""

    rule: CompiledRule
    key: str


def compile_rule(rule: RateLimitRule, origin: str) -> CompiledRule:
    """Compile one configured rule; `origin` is `g`, `r.<route>` or `p.<plan>`."""
    return CompiledRule(
        name=rule.name,
        bucket=f"{origin}/{rule.name}",
        path=compile_pattern(rule.match.path),
        methods=frozenset(rule.match.methods),
        key=rule.key,
        per_second=rule.per_second,
        burst=rule.burst,
    )


def _compile_all(rules: Iterable[RateLimitRule], origin: str) -> tuple[CompiledRule, ...]:
    return tuple(compile_rule(rule, origin) for rule in rules)


class RuleSet:
    """All configured rules; which of them match a request shape (route, plan, method, path)
    is computed once per shape and remembered (`pure_memo`)."""

    def __init__(
        self,
        global_rules: Sequence[CompiledRule] = (),
        by_route: Mapping[str, Sequence[CompiledRule]] | None = None,
        by_plan: Mapping[str, Sequence[CompiledRule]] | None = None,
    ) -> None:
        self.global_rules = tuple(global_rules)
        self.by_route = {k: tuple(v) for k, v in (by_route or {}).items()}
        self.by_plan = {k: tuple(v) for k, v in (by_plan or {}).items()}
        self._with_route = {k: self.global_rules + v for k, v in self.by_route.items()}
        # The rules are fixed for this instance, so which of them match is pure.
        self._matching = pure_memo(self.matching)

    @classmethod
    def from_config(cls, limits: RateLimitsConfig, upstreams: Sequence[Upstream]) -> RuleSet:
        """Compile `rate_limits` and every upstream's `rate_limits`."""
        return cls(
            _compile_all(limits.rules, "g"),
            {u.name: _compile_all(u.rate_limits, f"r.{u.name}") for u in upstreams},
            {plan: _compile_all(rules, f"p.{plan}") for plan, rules in limits.plans.items()},
        )

    def __bool__(self) -> bool:
        return bool(self.global_rules or any(self.by_route.values()) or any(self.by_plan.values()))

    def candidates(self, route: str | None, plan: str | None) -> tuple[CompiledRule, ...]:
        """Global, then route, then plan rules, before matching."""
        found = self.global_rules
        if route is not None:
            found = self._with_route.get(route, found)
        if plan is not None:
            found += self.by_plan.get(plan, ())
        return found

    def matching(
        self, route: str | None, plan: str | None, method: str, path: str
    ) -> tuple[CompiledRule, ...]:
        """The candidates whose methods and path pattern match (pure: memoized per request
        shape by `applicable`)."""
        method = method.upper()
        return tuple(r for r in self.candidates(route, plan) if r.matches(method, path))

    def applicable(self, scope: RequestScope) -> list[AppliedRule]:
        """The rules that count this request, each with its bucket key."""
        route = scope.route.name if scope.route is not None else None
        principal = scope.principal
        plan = principal.tenant.plan if principal is not None else None
        path, method = scope.path, scope.method
        match = self._matching if len(path) + len(method) <= MEMO_MAX_KEY else self.matching
        applied = []
        for rule in match(route, plan, method, path):
            key = rule.key_for(scope)
            if key is not None:
                applied.append(AppliedRule(rule, key))
        return applied
