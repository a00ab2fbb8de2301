"""Per-tenant settings: feature flags, plan, a dedicated upstream, roles that require MFA.

`apply_settings` validates a PATCH body against the tenant and the configuration and returns
the updated tenant; every problem is reported at once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping
from typing import Any

from gateway.identity.errors import InvalidInput
from gateway.identity.models import ROLES, Tenant

FEATURE_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
SETTINGS = ("features", "plan", "upstream", "require_mfa")
MAX_FEATURES = 64


def _features(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_FEATURES:
        raise ValueError(f"a list of at most {MAX_FEATURES} feature names")
    if not all(isinstance(f, str) and FEATURE_RE.fullmatch(f) for f in value):
        # SECURITY: features are injected upstream as a header: no separators or controls.
        raise ValueError("feature names of lower-case letters, digits, '-' and '_'")
    return tuple(sorted(set(value)))


def _choice(value: Any, allowed: Collection[str], what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in allowed:
        names = ", ".join(sorted(allowed)) or "none configured"
        raise ValueError(f"null or one of the configured {what} ({names})")
    return value


def _mfa_roles(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(r, str) and r in ROLES for r in value):
        raise ValueError(f"a list of roles among {', '.join(ROLES)}")
    return tuple(sorted(set(value)))


def apply_settings(
    tenant: Tenant, body: Mapping[str, Any], plans: Collection[str], upstreams: Collection[str]
) -> Tenant:
    """`tenant` with the body's settings applied; InvalidInput names every bad field."""
    unknown = sorted(set(body) - set(SETTINGS))
    problems = [f"`{k}` is not a tenant setting" for k in unknown]
    changes: dict[str, Any] = {}
    parsers = {
        "features": _features,
        "plan": lambda v: _choice(v, plans, "plans"),
        "upstream": lambda v: _choice(v, upstreams, "upstreams"),
        "require_mfa": _mfa_roles,
    }
    for key, parse in parsers.items():
        if key in body:
            try:
                changes[key] = parse(body[key])
            except ValueError as exc:
                problems.append(f"`{key}`: expected {exc}")
    if problems:
        raise InvalidInput(
            ",".join(sorted(set(body) & set(SETTINGS))) or "body", "; ".join(problems)
        )
    return dataclasses.replace(tenant, **changes)


def settings_view(tenant: Tenant) -> dict[str, Any]:
    """The tenant and its settings as the admin API shows them."""
    return {
        "id": tenant.id,
        "slug": tenant.slug,
        "features": list(tenant.features),
        "plan": tenant.plan,
        "upstream": tenant.upstream,
        "require_mfa": list(tenant.require_mfa),
    }
