"""Changing a tenant's stored policy rules: validation, audit, storage, engine refresh.

The admin API and the CLI both go through `TenantRuleService.replace_rules`, which
guarantees that a stored rule set:

* has only rules whose domain is the tenant (a rule given without a domain gets it; one
  naming `*` or another tenant is refused),
* passes `tenant_rule_problems` (the same check `lint` uses) and builds an enforcer under the
  live model,
* has at most `MAX_TENANT_RULES` rules (a tenant's enforcer scans all of them per decision),
* is written with its `policy.update` audit event in one transaction, after which the engine
  drops its cached view of the tenant.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from gateway.audit.events import Actor, AuditEvent, RequestContext
from gateway.policy.engine import PolicyEngine
from gateway.policy.ports import TenantRuleStore
from gateway.policy.rules import PolicyError, Rule, tenant_rule_problems
from gateway.policy.snapshot import build_enforcer, tenant_rule_rows
from gateway.storage.ports import BUS_RESYNC, BusCallback, ChangeBus, StoreUnavailable

MAX_TENANT_RULES: Final = 200


def rules_for_tenant(tenant_id: str, rules: Sequence[Rule]) -> list[Rule]:
    """The rules with an empty domain set to `tenant_id`; `PolicyError` lists every problem."""
    owned = [r if r.dom else dataclasses.replace(r, dom=tenant_id) for r in rules]
    problems = [
        f"rule {index}: {problem}"
        for index, rule in enumerate(owned, start=1)
        for problem in tenant_rule_problems(rule, tenant_id)
    ]
    if len(owned) > MAX_TENANT_RULES:
        problems.append(f"a tenant has at most {MAX_TENANT_RULES} rules, got {len(owned)}")
    if problems:
        raise PolicyError(problems)
    return list(dict.fromkeys(owned))


log = logging.getLogger("gateway.policy")

POLICY_CHANGED = "policy.changed"  # {"tenant_id": str}


class TenantRuleService:
    """Reads and replaces one tenant's stored rules (see the module docstring)."""

    def __init__(
        self, store: TenantRuleStore, engine: PolicyEngine, bus: ChangeBus | None = None
    ) -> None:
        self._store = store
        self._engine = engine
        self._bus = bus

    async def list_rules(self, tenant_id: str) -> list[Rule]:
        """The tenant's stored rules (file rules are not included)."""
        return await self._store.list_rules(tenant_id)

    async def replace_rules(
        self,
        tenant_id: str,
        rules: Sequence[Rule],
        actor: Actor,
        context: RequestContext | None = None,
    ) -> list[Rule]:
        """Validates, stores and activates `rules` as the tenant's whole set; returns them."""
        owned = rules_for_tenant(tenant_id, rules)
        snapshot = self._engine.snapshot
        try:  # the live model must accept the set before it is stored
            build_enforcer(snapshot.model_text, tenant_rule_rows(snapshot, owned, tenant_id))
        except Exception as exc:
            raise PolicyError([f"the model refuses these rules: {exc}"]) from exc
        event = AuditEvent(
            action="policy.update",
            actor=actor,
            tenant_id=tenant_id,
            target=f"tenant:{tenant_id}/policy",
            context=context or RequestContext(),
            details={"count": len(owned), "rules": [str(r) for r in owned]},
        )
        await self._store.replace_rules(tenant_id, owned, event)
        self._engine.invalidate_tenant(tenant_id)
        if self._bus is not None:  # other replicas drop their copy of this tenant's rules
            await self._bus.publish(POLICY_CHANGED, {"tenant_id": tenant_id})
        return owned


def policy_listener(engine: PolicyEngine) -> BusCallback:
    """A change-bus subscriber keeping `engine` in step with other replicas' rule changes."""

    async def on_change(topic: str, payload: Mapping[str, Any]) -> None:
        tenant_id = payload.get("tenant_id")
        if topic == POLICY_CHANGED and isinstance(tenant_id, str):
            engine.invalidate_tenant(tenant_id)
        elif topic == BUS_RESYNC:  # notices may have been lost: re-read every tenant
            engine.reload()

    return on_change


async def watch_rule_changes(
    engine: PolicyEngine, store: TenantRuleStore, interval: float = 1.0
) -> None:
    """Drops tenants whose stored rules another process changed; runs until cancelled.

    The change bus is the fast path; this poll (one cheap query a second) is the guarantee:
    without Redis, with several workers, or while the bus is down, a change made anywhere
    applies here within about `interval`.
    """
    cursor: int | None = None
    while True:
        try:
            tenants, cursor = await store.changes_since(cursor)
            for tenant_id in tenants:
                engine.invalidate_tenant(tenant_id)
        except StoreUnavailable:
            log.warning("policy: cannot poll for rule changes; retrying")
        await asyncio.sleep(interval)
