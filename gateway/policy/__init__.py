"""Casbin authorization: per-tenant enforcers over a swappable file snapshot, tenant rules.

Modules: `rules` (rule value, CSV reader, shared validation), `matching` (the literal path and
method matchers the model calls), `snapshot` (validated file policy, enforcer builder),
`tenants` (one tenant's enforcer and role links), `engine` (`PolicyEngine`), `ports`
(`TenantRuleStore`), `service` (`TenantRuleService`), `tooling` (`lint`, `check`), `cases`
(`run_cases`, the YAML decision tables).
"""
