"""The chain's memos: the same answer as the function they save, bounded, never an error
remembered; and the stages that use them answer exactly as without them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.config import load_config
from gateway.identity.models import Tenant
from gateway.identity.principal import Principal
from gateway.pipeline.memo import MEMO_ENTRIES, MEMO_MAX_KEY, pure_memo
from gateway.pipeline.reasons import Reason
from gateway.pipeline.scope import RequestScope
from gateway.pipeline.stages.route import MatchRoute
from gateway.pipeline.stages.tenant import ResolveTenant
from gateway.proxy.routes import RouteTable
from gateway.ratelimit.rules import RuleSet


class Counted:
    """A pure function that counts its calls and refuses the argument "bad"."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, text: str) -> str:
        self.calls += 1
        if text == "bad":
            raise ValueError("refused")
        return text.upper()


def test_a_memo_answers_as_the_function_and_computes_once() -> None:
    fn = Counted()
    memo = pure_memo(fn)
    assert [memo("a"), memo("a"), memo("b")] == ["A", "A", "B"]
    assert fn.calls == 2


def test_an_error_is_raised_every_time_and_never_remembered() -> None:
    fn = Counted()
    memo = pure_memo(fn)
    for _ in range(2):
        with pytest.raises(ValueError, match="refused"):
            memo("bad")
    assert fn.calls == 2


def test_a_memo_holds_a_bounded_number_of_entries() -> None:
    fn = Counted()
    memo = pure_memo(fn)
    for i in range(MEMO_ENTRIES + 1):
        memo(str(i))
    memo("0")  # the least recently used entry was dropped: computed again
    assert fn.calls == MEMO_ENTRIES + 2


CONFIG: dict[str, Any] = {
    "upstreams": [
        {"name": "app", "url": "http://127.0.0.1:9", "public_paths": ["/pub/*"]},
        {"name": "api", "url": "http://127.0.0.1:9", "match": {"host": "api.example.com"}},
    ],
    "tenancy": {"header": True, "path_prefix": True, "subdomain_of": "example.com"},
    "rate_limits": {
        "rules": [{"name": "writes", "match": {"methods": ["POST"]}, "key": ["ip"],
                   "rate": "1/s", "burst": 2}],
        "plans": {"pro": [{"name": "pro", "key": ["tenant"], "rate": "9/s", "burst": 9}]},
    },
}  # fmt: skip
LOADED = load_config(None, env={}, overrides=CONFIG)


def scope(path: str, host: str = "h.test", headers: dict[str, str] | None = None) -> RequestScope:
    request = make_mocked_request("GET", path, headers={"Host": host, **(headers or {})})
    made = RequestScope(request, "req-1", 0.0, host=host, target=path)
    made.path = path
    return made


def route_of(stage: MatchRoute, path: str, host: str = "h.test") -> tuple[str | None, bool]:
    made = scope(path, host)
    deny = asyncio.run(stage(made))
    return (None if deny is not None else made.route.name, made.public)  # type: ignore[union-attr]


def test_a_remembered_route_is_the_route_of_that_host_and_path_only() -> None:
    stage = MatchRoute(RouteTable(LOADED.upstreams))
    for _ in range(2):  # the second round answers from the memo
        assert route_of(stage, "/pub/x") == ("app", True)
        assert route_of(stage, "/priv") == ("app", False)
        assert route_of(stage, "/pub/x", "API.example.com:443") == ("api", False)


def test_a_target_too_long_to_remember_is_still_routed() -> None:
    stage = MatchRoute(RouteTable(LOADED.upstreams))
    long_path = "/pub/" + "a" * MEMO_MAX_KEY
    assert route_of(stage, long_path) == ("app", True)
    assert route_of(stage, long_path, "api.example.com") == ("api", False)


def tenant_of(stage: ResolveTenant, made: RequestScope) -> tuple[str | None, str] | Reason:
    deny = asyncio.run(stage(made))
    return deny.reason if deny is not None else (made.tenant_slug, made.path)


def test_a_remembered_tenant_is_that_of_the_host_header_and_path_only() -> None:
    stage = ResolveTenant(LOADED.tenancy)
    for _ in range(2):
        assert tenant_of(stage, scope("/t/acme/x")) == ("acme", "/x")
        assert tenant_of(stage, scope("/x", "acme.example.com")) == ("acme", "/x")
        assert tenant_of(stage, scope("/x", headers={"X-Tenant": "beta"})) == ("beta", "/x")
        assert tenant_of(stage, scope("/x")) == (None, "/x")


def test_a_tenant_conflict_is_refused_every_time() -> None:
    stage = ResolveTenant(LOADED.tenancy)
    for _ in range(2):
        conflicting = scope("/t/acme/x", headers={"X-Tenant": "beta"})
        assert tenant_of(stage, conflicting) == Reason.TENANT_CONFLICT


def test_a_long_tenant_selector_is_still_checked() -> None:
    stage = ResolveTenant(LOADED.tenancy)
    long_slug = "a" * (MEMO_MAX_KEY + 1)
    refused = scope("/x", headers={"X-Tenant": long_slug})
    assert tenant_of(stage, refused) == Reason.TENANT_CONFLICT


def test_remembered_rate_rules_follow_the_tenant_plan_and_method() -> None:
    rules = RuleSet.from_config(LOADED.rate_limits, LOADED.upstreams)
    route = RouteTable(LOADED.upstreams).by_name["app"]
    pro = Tenant(id="t-pro", slug="pro", created_at=0.0, plan="pro")
    free = Tenant(id="t-free", slug="free", created_at=0.0)

    def applied(method: str, tenant: Tenant) -> list[str]:
        made = scope("/x")
        made.method, made.route, made.client_ip = method, route, "192.0.2.1"
        made.principal = Principal(kind="user", id="u", email=None, tenant=tenant, roles=(),
                                   auth_method="session")  # fmt: skip
        return [a.rule.name for a in rules.applicable(made)]

    for _ in range(2):
        assert applied("POST", pro) == ["writes", "pro"]
        assert applied("POST", free) == ["writes"]
        assert applied("GET", pro) == ["pro"]
        assert applied("get", free) == []
