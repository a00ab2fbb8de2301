"""Which configured rules apply to a request, and the bucket keys that keep callers apart."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import make_mocked_request

from gateway.config import load_config
from gateway.identity.models import Tenant
from gateway.identity.principal import Principal
from gateway.pipeline.scope import RequestScope
from gateway.proxy.routes import RouteTable
from gateway.ratelimit.rules import RuleSet, key_value

PLAN_TENANT = Tenant(id="t-pro", slug="pro", created_at=0.0, plan="pro")
FREE_TENANT = Tenant(id="t-free", slug="free", created_at=0.0)

CONFIG: dict[str, Any] = {
    "upstreams": [
        {
            "name": "app",
            "url": "http://127.0.0.1:9",
            "rate_limits": [{"name": "app-writes", "match": {"methods": ["post"]},
                             "key": ["route", "ip"], "rate": "1/s", "burst": 2}],
        },
        {"name": "other", "url": "http://127.0.0.1:9", "match": {"path_prefix": "/other"}},
    ],
    "rate_limits": {
        "rules": [
            {"name": "per-ip", "key": ["ip"], "rate": "100/m", "burst": 50},
            {"name": "api", "match": {"path": "/api/*", "methods": ["POST"]},
             "key": ["tenant", "user"], "rate": "10/s", "burst": 20},
            {"name": "keys", "key": ["api_key"], "rate": "5/s", "burst": 5},
        ],
        "plans": {"pro": [{"name": "app-writes", "key": ["tenant"], "rate": "1000/h", "burst": 3}]},
    },
}  # fmt: skip


def rules(config: dict[str, Any] = CONFIG) -> RuleSet:
    loaded = load_config(None, env={}, overrides=config)
    return RuleSet.from_config(loaded.rate_limits, loaded.upstreams)


def routes() -> RouteTable:
    return RouteTable(load_config(None, env={}, overrides=CONFIG).upstreams)


def user(uid: str = "u-1", tenant: Tenant = FREE_TENANT, key_id: str | None = None) -> Principal:
    if key_id is not None:
        return Principal(kind="service_account", id=uid, email=None, tenant=tenant, roles=(),
                         auth_method="api_key", key_id=key_id)  # fmt: skip
    return Principal(kind="user", id=uid, email=None, tenant=tenant, roles=(),
                     auth_method="session")  # fmt: skip


def scope(
    path: str = "/",
    method: str = "GET",
    ip: str = "192.0.2.1",
    principal: Principal | None = None,
    route: str | None = "app",
) -> RequestScope:
    made = RequestScope(make_mocked_request(method, path), "req-1", 0.0)
    made.method, made.path, made.client_ip, made.principal = method, path, ip, principal
    made.route = routes().by_name[route] if route else None
    return made


def names(found: RuleSet, s: RequestScope) -> list[str]:
    return [a.rule.name for a in found.applicable(s)]


def keys(found: RuleSet, s: RequestScope) -> list[str]:
    return [a.key for a in found.applicable(s)]


def test_an_anonymous_request_gets_only_rules_it_has_every_key_part_for() -> None:
    assert names(rules(), scope("/api/x", "POST")) == ["per-ip", "app-writes"]


def test_path_and_method_match() -> None:
    signed_in = user()
    assert names(rules(), scope("/api/x", "POST", principal=signed_in)) == [
        "per-ip", "api", "app-writes",
    ]  # fmt: skip
    assert names(rules(), scope("/api/x", "GET", principal=signed_in)) == ["per-ip"]
    assert names(rules(), scope("/apix", "POST", principal=signed_in)) == ["per-ip", "app-writes"]
    assert names(rules(), scope("/x", "post", principal=signed_in)) == ["per-ip", "app-writes"]


def test_route_rules_only_on_their_route_and_plan_rules_only_for_the_plan() -> None:
    assert names(rules(), scope("/other/a", "POST", route="other")) == ["per-ip"]
    pro = user(tenant=PLAN_TENANT)
    found = rules().applicable(scope("/x", "POST", principal=pro))
    assert [(a.rule.name, a.key) for a in found] == [
        ("per-ip", "g/per-ip:ip=192.0.2.1"),
        ("app-writes", "r.app/app-writes:route=app|ip=192.0.2.1"),
        ("app-writes", "p.pro/app-writes:tenant=t-pro"),
    ]


def test_keys_keep_users_tenants_and_api_keys_apart() -> None:
    found = rules()
    a = keys(found, scope("/api/1", "POST", principal=user("u-1")))
    b = keys(found, scope("/api/1", "POST", principal=user("u-2")))
    c = keys(found, scope("/api/1", "POST", principal=user("u-1", tenant=PLAN_TENANT)))
    assert a[1] == "g/api:tenant=t-free|user=u-1"
    assert len({a[1], b[1], c[1]}) == 3
    k1 = keys(found, scope("/", principal=user("sa", key_id="k-1")))
    k2 = keys(found, scope("/", principal=user("sa", key_id="k-2")))
    assert k1[1:] == ["g/keys:api_key=k-1"]
    assert k2[1:] == ["g/keys:api_key=k-2"]


def test_ipv6_clients_share_a_bucket_per_64() -> None:
    found = rules()
    one = keys(found, scope(ip="2001:db8:1:2::1"))[0]
    two = keys(found, scope(ip="2001:db8:1:2:ffff::9"))[0]
    other = keys(found, scope(ip="2001:db8:1:3::1"))[0]
    assert one == two == "g/per-ip:ip=2001:db8:1:2::/64"
    assert other != one
    assert keys(found, scope(ip="::ffff:192.0.2.7"))[0] == "g/per-ip:ip=192.0.2.7"


def test_long_or_unusual_values_are_hashed_never_stored_raw() -> None:
    assert key_value("u-1") == "u-1"
    email = "ann@example.test"
    hashed = key_value(email)
    assert hashed.startswith("h.") and len(hashed) == 34 and email not in hashed
    assert key_value("x" * 65).startswith("h.")
    assert key_value("a|b=c").startswith("h.")
    assert key_value("a|b") != key_value("a|c")


def test_no_client_ip_or_no_route_means_no_such_rule() -> None:
    assert names(rules(), scope("/x", "POST", ip="", route=None)) == []


def test_empty_rule_set_is_false_and_windows_are_whole_seconds() -> None:
    assert not RuleSet.from_config(load_config(None, env={}).rate_limits, ())
    found = rules()
    assert found
    assert [r.window for r in found.global_rules] == [30, 2, 1]
