"""Which tenant a request names: subdomain, `X-Tenant` header, or `/t/{slug}/` prefix.

Resolution is pure and runs before any store access. Every configured source present in the
request is read; when two of them name different tenants the request is refused, never
guessed. When none names a tenant, the principal's default tenant applies later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.config import TenancyConfig

SLUG_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
TENANT_HEADER = "X-Tenant"
PREFIX = "/t/"


class TenantConflict(Exception):
    """Two sources name different tenants, or a source is malformed."""


@dataclass(frozen=True, slots=True)
class TenantRequest:
    """The slug a request names (None: use the default) and the path after any prefix."""

    slug: str | None
    path: str
    sources: tuple[str, ...] = ()


def _from_subdomain(host: str, domain: str | None) -> str | None:
    if domain is None or not host.endswith("." + domain):
        return None
    label = host[: -len(domain) - 1]
    # SECURITY: exactly one label: `a.b.example.com` must not resolve to tenant `a.b`.
    if "." in label or not SLUG_RE.fullmatch(label):
        raise TenantConflict("malformed tenant subdomain")
    return label


def _from_prefix(path: str) -> tuple[str | None, str]:
    if not path.startswith(PREFIX):
        return None, path
    slug, sep, rest = path[len(PREFIX) :].partition("/")
    if not SLUG_RE.fullmatch(slug):
        raise TenantConflict("malformed tenant path prefix")
    return slug, "/" + rest if sep else "/"


def _from_header(values: list[str]) -> str | None:
    if not values:
        return None
    # SECURITY: duplicate selectors could be read differently by different layers.
    if len(values) > 1 or not SLUG_RE.fullmatch(values[0].strip().lower()):
        raise TenantConflict("malformed X-Tenant header")
    return values[0].strip().lower()


def resolve_tenant_request(
    config: TenancyConfig, host: str, header_values: list[str], path: str
) -> TenantRequest:
    """The tenant named by the request's configured sources; raises TenantConflict.

    `host` is the lower-cased hostname without port; `path` the normalized path. The prefix
    is removed from the returned path only when `strip_prefix` is set.
    """
    found: dict[str, str] = {}
    sub = _from_subdomain(host, config.subdomain_of)
    if sub is not None:
        found["subdomain"] = sub
    if config.header:
        head = _from_header(header_values)
        if head is not None:
            found["header"] = head
    new_path = path
    if config.path_prefix:
        prefixed, stripped = _from_prefix(path)
        if prefixed is not None:
            found["path"] = prefixed
            new_path = stripped if config.strip_prefix else path
    slugs = set(found.values())
    if len(slugs) > 1:
        raise TenantConflict("the request names more than one tenant")
    return TenantRequest(slugs.pop() if slugs else None, new_path, tuple(sorted(found)))
