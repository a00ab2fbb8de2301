"""Tenant resolution from subdomain, header and path prefix."""

from __future__ import annotations

import pytest

from gateway.config import TenancyConfig
from gateway.identity.tenancy import TenantConflict, resolve_tenant_request

ALL = TenancyConfig(subdomain_of="example.com", header=True, path_prefix=True)


def test_no_source_means_default() -> None:
    req = resolve_tenant_request(ALL, "example.com", [], "/x")
    assert req.slug is None
    assert req.path == "/x"


@pytest.mark.parametrize(
    ("host", "header", "path", "slug", "rest"),
    [
        ("acme.example.com", [], "/x", "acme", "/x"),
        ("example.com", ["acme"], "/x", "acme", "/x"),
        ("example.com", [], "/t/acme/x/y", "acme", "/x/y"),
        ("example.com", [], "/t/acme", "acme", "/"),
        ("acme.example.com", ["ACME"], "/t/acme/x", "acme", "/x"),
    ],
)
def test_each_source(host: str, header: list[str], path: str, slug: str, rest: str) -> None:
    req = resolve_tenant_request(ALL, host, header, path)
    assert (req.slug, req.path) == (slug, rest)


@pytest.mark.parametrize(
    ("host", "header", "path"),
    [
        ("acme.example.com", ["other"], "/x"),
        ("acme.example.com", [], "/t/other/x"),
        ("example.com", ["acme"], "/t/other/x"),
        ("example.com", ["acme", "acme"], "/x"),
        ("a.b.example.com", [], "/x"),
        ("example.com", ["Bad Slug"], "/x"),
        ("example.com", [], "/t/-bad-/x"),
    ],
)
def test_conflicting_or_malformed_sources_are_refused(
    host: str, header: list[str], path: str
) -> None:
    with pytest.raises(TenantConflict):
        resolve_tenant_request(ALL, host, header, path)


def test_disabled_sources_are_ignored() -> None:
    off = TenancyConfig()
    req = resolve_tenant_request(off, "acme.example.com", ["other"], "/t/x/y")
    assert req.slug is None
    assert req.path == "/t/x/y"


def test_prefix_kept_when_not_stripping() -> None:
    keep = TenancyConfig(path_prefix=True, strip_prefix=False)
    req = resolve_tenant_request(keep, "h", [], "/t/acme/x")
    assert (req.slug, req.path) == ("acme", "/t/acme/x")
