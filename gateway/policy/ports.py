"""The port for the rules each tenant stores for itself (beside the file policy).

Its conformance suite is `tests/contract/test_policy_store.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.audit.events import AuditEvent
from gateway.policy.rules import Rule


class TenantRuleStore(Protocol):
    """Each tenant's stored policy rules, kept per tenant and replaced as a whole.

    Guarantees of every adapter:

    * a stored rule's `dom` is **always** the owning tenant: the adapter keeps no domain of its
      own and returns `dom == tenant_id` whatever `dom` the caller passed, so no tenant can
      hold a rule for `*` or for another tenant;
    * `list_rules(t)` returns only tenant `t`'s rules, in the order they were written;
    * `replace_rules` is atomic and writes `audit_event` in the same transaction: after it,
      the tenant has exactly `rules` (duplicates dropped) and the event is recorded, or, on
      any failure, nothing changed;
    * backend failures raise `gateway.storage.ports.StoreUnavailable`.

    Validation (`gateway.policy.rules.tenant_rule_problems`) happens above the port, in
    `TenantRuleService`.
    """

    async def list_rules(self, tenant_id: str) -> list[Rule]:
        """The tenant's rules, each with `dom == tenant_id`."""
        ...

    async def changes_since(self, cursor: int | None) -> tuple[list[str], int]:
        """The tenants whose rules changed after `cursor`, and the cursor to ask with next.

        `None` asks for the current cursor only (no tenants). Lets every process see rule
        changes made by any other process, whatever the change bus delivered.
        """
        ...

    async def replace_rules(
        self, tenant_id: str, rules: Sequence[Rule], audit_event: AuditEvent
    ) -> None:
        """Makes `rules` the tenant's whole rule set and records `audit_event`, atomically."""
        ...
