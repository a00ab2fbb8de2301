"""The policy engine: per-tenant Casbin enforcers over a swappable snapshot, with a decision cache.

Guarantees:

* **Partitioned per tenant.** A decision runs on a small enforcer holding only that tenant's
  rules (`TenantEnforcer`), so its cost does not grow with the number of tenants; the file
  rules are indexed by domain (`DomainIndex`), so building one does not scan the file. At most
  `max_tenants` enforcers are kept (LRU); a request for an unknown tenant creates no state
  beyond one LRU slot, and tenants without rules of their own share one compiled policy.
* **Compiled when possible.** With the shipped model (`is_shipped_model`), tenants decide
  through a `CompiledPolicy` (an index by subject: tens of µs less per decision, no per-subject
  state); with any other model, through pycasbin. Both give the same allow/deny.
* **Decision cache.** Decisions are cached by (version, tenant, subject, roles, path, method),
  at most `max_decisions` entries (oldest first out, O(1)); a hit is one dict lookup. Errors are
  never cached.
* **Snapshots and swaps.** The live state (version, file snapshot, tenant enforcers, decision
  cache) is one reference. A reload or a tenant change builds a new state and swaps it; a
  failed reload keeps the old state and returns (and logs) why. Every swap bumps `version`,
  and `Decision.policy_version` says which version decided.
* **Fail closed.** Any exception in Casbin, a store failure, or a tenant whose stored rules
  are not loaded gives `Decision(False, ("policy-error",))`, which the pipeline maps to 503.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.observability.metrics import DECISION_CACHE, POLICY_RELOADS, POLICY_VERSION
from gateway.pipeline.reasons import Decision
from gateway.policy.compiled import CompiledPolicy, DomainIndex, is_shipped_model
from gateway.policy.ports import TenantRuleStore
from gateway.policy.rules import ANY_DOMAIN, PolicyError, Rule, tenant_rule_problems
from gateway.policy.snapshot import PolicySnapshot, load_snapshot
from gateway.policy.tenants import DENY, ERROR, LruMap, TenantEnforcer, error_decision, to_decision
from gateway.storage.singleflight import SingleFlight

log = logging.getLogger(__name__)

DecisionKey = tuple[int, str, str, tuple[str, ...], str, str]


@dataclass(slots=True)
class _State:
    """Everything one policy version decides with; replaced as a whole, never rebuilt in place."""

    version: int
    snapshot: PolicySnapshot
    tenants: LruMap[str, TenantEnforcer]
    file_rules: DomainIndex
    compilable: bool
    shared: CompiledPolicy | None = None  # of tenants without rules of their own, built lazily
    decisions: OrderedDict[DecisionKey, Decision] = field(default_factory=OrderedDict)


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """Memory bounds: tenant enforcers kept, subjects linked per tenant, cached decisions."""

    max_tenants: int = 1000
    max_subjects: int = 1000
    max_decisions: int = 10_000


class PolicyEngine:
    """Authorizes (subject, roles, tenant, path, method) against the file and tenant rules."""

    def __init__(
        self,
        snapshot: PolicySnapshot,
        *,
        store: TenantRuleStore | None = None,
        files: tuple[Path, Path] | None = None,
        limits: EngineLimits | None = None,
        freeze_gc: bool = True,
    ) -> None:
        self._store = store
        self._files = files
        self._limits = limits or EngineLimits()
        self._freeze_gc = freeze_gc
        self._local_rules: dict[str, tuple[Rule, ...]] = {}
        # Keyed by (tenant, policy version): no load outlives the version it was begun under.
        self._loads: SingleFlight[tuple[str, int], list[Rule]] = SingleFlight()
        self._state = self._new_state(1, snapshot)

    @classmethod
    def from_files(
        cls,
        model_path: Path,
        rules_path: Path,
        *,
        store: TenantRuleStore | None = None,
        limits: EngineLimits | None = None,
        freeze_gc: bool = True,
    ) -> PolicyEngine:
        """An engine over the two files (watchable by `watch_files`); `PolicyError` if invalid."""
        snapshot = load_snapshot(model_path, rules_path)
        files = (model_path, rules_path)
        engine = cls(snapshot, store=store, files=files, limits=limits, freeze_gc=freeze_gc)
        engine._after_load()
        return engine

    @property
    def version(self) -> int:
        return self._state.version

    @property
    def snapshot(self) -> PolicySnapshot:
        return self._state.snapshot

    @property
    def tenant_count(self) -> int:
        return len(self._state.tenants)

    def tenant_enforcer(self, tenant_id: str) -> TenantEnforcer | None:
        """The loaded enforcer of `tenant_id`, if any (for explain and tests)."""
        return self._state.tenants.get(tenant_id)

    def decide(
        self, subject: str, roles: Sequence[str], tenant_id: str, path: str, method: str
    ) -> Decision:
        """The decision for `subject` holding `roles` in `tenant_id`; never raises.

        With a rule store, the tenant's rules must have been loaded (`ensure_tenant`, or use
        `authorize`); otherwise the decision is a fail-closed `policy-error`.
        """
        state = self._state
        key = (state.version, tenant_id, subject, tuple(roles), path, method)
        cached = state.decisions.get(key)
        if cached is not None:
            return cached
        decision = self._decide_uncached(state, key)
        if decision.reasons != (ERROR,):
            if len(state.decisions) >= self._limits.max_decisions:
                state.decisions.popitem(last=False)
            state.decisions[key] = decision
        return decision

    async def authorize(
        self, subject: str, roles: Sequence[str], tenant_id: str, path: str, method: str
    ) -> Decision:
        """`decide`, first loading the tenant's stored rules if needed; never raises."""
        state = self._state
        cached = state.decisions.get(
            (state.version, tenant_id, subject, tuple(roles), path, method)
        )
        if cached is not None:  # the hot path: no store round trip, even for an evicted tenant
            DECISION_CACHE.hit()
            return cached
        DECISION_CACHE.miss()
        if tenant_id not in state.tenants and self._store is not None:
            try:
                await self.ensure_tenant(tenant_id)
            except Exception:
                log.exception("policy: cannot load the rules of tenant %s", tenant_id)
                return error_decision(self._state.version)
        return self.decide(subject, roles, tenant_id, path, method)

    def _decide_uncached(self, state: _State, key: DecisionKey) -> Decision:
        version, tenant_id, subject, roles, path, method = key
        # SECURITY: `*` is the every-tenant domain of the file, never a request's tenant; and
        # a subject named like a role would hold that role through Casbin's `g(x, x)`.
        if not tenant_id or tenant_id == ANY_DOMAIN or not subject:
            return Decision(False, (DENY,), None, version)
        if subject in roles or subject in state.snapshot.role_names:
            return Decision(False, (DENY,), None, version)
        try:
            tenant = state.tenants.get(tenant_id)
            if tenant is None and self._store is None:
                tenant = self._install(state, tenant_id, self._local_rules.get(tenant_id, ()))
            if tenant is None:
                return error_decision(version)
            allowed, rule = tenant.enforce(subject, roles, path, method)
        except Exception:
            log.exception("policy: decision failed in tenant %s", tenant_id)
            return error_decision(version)
        return to_decision(allowed, rule, version)

    async def ensure_tenant(self, tenant_id: str) -> None:
        """Loads the tenant's stored rules into its enforcer unless they already are.

        Raises the store's error, or `PolicyError` if the stored rules are invalid. A swap
        during the load (a reload, a tenant change) discards the load and starts over.
        Concurrent requests for a tenant that is not loaded share one read of its rules and
        one compilation (after a policy change, every request in flight would otherwise
        read and compile the same rules).
        """
        for _ in range(3):
            state = self._state
            if tenant_id in state.tenants:
                return
            if self._store is None:
                stored = list(self._local_rules.get(tenant_id, ()))
            else:
                read = functools.partial(self._store.list_rules, tenant_id)
                stored = await self._loads.run((tenant_id, state.version), read)
            if self._state is state:
                if tenant_id not in state.tenants:  # else a request sharing the read did it
                    self._install(state, tenant_id, stored)
                return
        raise PolicyError([f"tenant {tenant_id}: policy changed during every load attempt"])

    def _install(self, state: _State, tenant_id: str, stored: Sequence[Rule]) -> TenantEnforcer:
        problems = [p for r in stored for p in tenant_rule_problems(r, tenant_id)]
        if problems:
            raise PolicyError(problems)
        # SECURITY: defense in depth -- a rule row never leaks across tenants even if a store errs.
        own = [r for r in stored if r.dom == tenant_id]
        rows = state.file_rules.rules_for(tenant_id) + own
        compiled = None
        if state.compilable and (own or state.file_rules.names(tenant_id)):
            compiled = CompiledPolicy(rows)
        elif state.compilable:
            state.shared = state.shared or CompiledPolicy(rows)
            compiled = state.shared
        tenant = TenantEnforcer(
            tenant_id, state.snapshot.model_text, rows, self._limits.max_subjects, compiled=compiled
        )
        state.tenants.put(tenant_id, tenant)
        return tenant

    def invalidate_tenant(self, tenant_id: str) -> None:
        """Forgets the tenant's rules and every cached decision (bumps the version).

        Call after the tenant's stored rules changed; the next decision reloads them.
        """
        old = self._state
        tenants = LruMap[str, TenantEnforcer](self._limits.max_tenants)
        for tid, enforcer in old.tenants.items():
            if tid != tenant_id:
                tenants.put(tid, enforcer)
        self._state = _State(
            old.version + 1, old.snapshot, tenants, old.file_rules, old.compilable, old.shared
        )

    def set_tenant_rules(self, tenant_id: str, rules: Sequence[Rule]) -> None:
        """Holds `rules` in memory as the tenant's stored rules (engines without a store only:
        policy tests, `check`). `PolicyError` if a rule is invalid for the tenant.
        """
        if self._store is not None:
            raise RuntimeError("this engine reads tenant rules from its store")
        problems = [p for r in rules for p in tenant_rule_problems(r, tenant_id)]
        if problems:
            raise PolicyError(problems)
        self._local_rules[tenant_id] = tuple(rules)
        self.invalidate_tenant(tenant_id)

    def reload(self) -> list[str]:
        """Re-reads the policy files; on success swaps them in, else keeps the old ones.

        Returns the problems that kept the old snapshot (empty on success).
        """
        if self._files is None:
            return ["this engine was not built from files"]
        try:
            snapshot = load_snapshot(*self._files)
        except PolicyError as exc:
            log.error("policy: reload refused, keeping version %s: %s", self.version, exc)
            POLICY_RELOADS.labels(result="error").inc()
            return exc.problems
        self._state = self._new_state(self._state.version + 1, snapshot)
        self._after_load()
        log.info("policy: reloaded files as version %s", self.version)
        POLICY_RELOADS.labels(result="ok").inc()
        POLICY_VERSION.set(self.version)
        return []

    async def watch_files(self, interval: float = 1.0) -> None:
        """Reloads whenever a policy file's mtime, size or inode changes; runs until cancelled."""
        seen = self._file_signature()
        while True:
            await asyncio.sleep(interval)
            current = self._file_signature()
            if current != seen:
                seen = current
                self.reload()

    def _file_signature(self) -> tuple[tuple[int, int, int], ...]:
        signature = []
        for path in self._files or ():
            try:
                st = os.stat(path)
                signature.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                signature.append((-1, -1, -1))
        return tuple(signature)

    def _new_state(self, version: int, snapshot: PolicySnapshot) -> _State:
        compilable = is_shipped_model(snapshot.model_text)
        if not compilable:
            log.warning("policy: custom model, deciding through pycasbin (slower)")
        index = DomainIndex(snapshot.rules)
        return _State(version, snapshot, LruMap(self._limits.max_tenants), index, compilable)

    def _after_load(self) -> None:
        # A collection of a large resident policy stalls every request for up to ~0.5 s (notes
        # B7). Collect the replaced snapshot once, then move the surviving long-lived heap into
        # the permanent generation so later collections no longer scan it.
        if self._freeze_gc:
            gc.collect()
            gc.freeze()
