"""The route table picks the most specific upstream."""

from __future__ import annotations

from gateway.config import load_config
from gateway.proxy.forward import upstream_url
from gateway.proxy.routes import RouteTable


def table(*upstreams: dict[str, object]) -> RouteTable:
    config = load_config(None, env={}, overrides={"upstreams": list(upstreams)})
    return RouteTable(config.upstreams)


def test_host_bound_and_longer_prefix_win() -> None:
    routes = table(
        {"name": "any", "url": "http://a"},
        {"name": "api", "url": "http://b", "match": {"path_prefix": "/api"}},
        {"name": "host", "url": "http://c", "match": {"host": "reports.example.com"}},
        {"name": "wild", "url": "http://d", "match": {"host": "*.tenants.example.com"}},
    )
    assert routes.match("example.com", "/x").name == "any"  # type: ignore[union-attr]
    assert routes.match("example.com", "/api").name == "api"  # type: ignore[union-attr]
    assert routes.match("example.com", "/api/v1").name == "api"  # type: ignore[union-attr]
    assert routes.match("example.com", "/apix").name == "any"  # type: ignore[union-attr]
    assert routes.match("reports.example.com", "/api").name == "host"  # type: ignore[union-attr]
    assert routes.match("a.tenants.example.com", "/").name == "wild"  # type: ignore[union-attr]
    assert routes.match("tenants.example.com", "/").name == "any"  # type: ignore[union-attr]


def test_no_route_without_a_catch_all() -> None:
    routes = table({"name": "api", "url": "http://b", "match": {"path_prefix": "/api"}})
    assert routes.match("h", "/other") is None


def test_public_paths_are_literal_outside_wildcards() -> None:
    route = table({"name": "a", "url": "http://a", "public_paths": ["/pub.lic/*"]}).routes[0]
    assert route.is_public("/pub.lic/x")
    assert not route.is_public("/pubXlic/x")
    assert not route.is_public("/pub.lic")


def test_upstream_url_keeps_the_base_path_and_raw_query() -> None:
    route = table({"name": "a", "url": "http://a:8000/base/"}).routes[0]
    url = upstream_url(route, "/x/%C3%A9", "q=%2F&b=1")
    assert str(url) == "http://a:8000/base/x/%C3%A9?q=%2F&b=1"
