"""The policy engine: default decisions, deny wins, tenant isolation, caching, reloads, bounds."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.events import AuditEvent
from gateway.policy import engine as engine_module
from gateway.policy.engine import EngineLimits, PolicyEngine
from gateway.policy.rules import PolicyError, Rule
from gateway.policy.tenants import TenantEnforcer
from gateway.storage.ports import StoreUnavailable

POLICY_DIR = Path(__file__).resolve().parents[2] / "policy"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    model, rules = tmp_path / "model.conf", tmp_path / "policy.csv"
    shutil.copy(POLICY_DIR / "model.conf", model)
    shutil.copy(POLICY_DIR / "policy.csv", rules)
    return model, rules


@pytest.fixture
def engine(files: tuple[Path, Path]) -> PolicyEngine:
    return PolicyEngine.from_files(*files, freeze_gc=False)


@pytest.mark.parametrize(
    ("roles", "path", "method", "allow", "reason"),
    [
        (("viewer",), "/docs", "GET", True, "policy-allow"),
        (("viewer",), "/docs", "POST", False, "no-matching-rule"),
        (("editor",), "/docs", "POST", True, "policy-allow"),
        (("editor",), "/admin/x", "POST", False, "policy-deny"),
        (("editor",), "/admin", "PUT", False, "policy-deny"),
        (("editor",), "/administrator", "POST", True, "policy-allow"),
        (("admin",), "/admin/x", "DELETE", True, "policy-allow"),
        (("admin",), "/.gateway/admin/x", "GET", False, "no-matching-rule"),
        (("operator",), "/.gateway/admin/x", "GET", True, "policy-allow"),
        ((), "/docs", "GET", False, "no-matching-rule"),
    ],
)
def test_default_decisions(
    engine: PolicyEngine, roles: tuple[str, ...], path: str, method: str, allow: bool, reason: str
) -> None:
    decision = engine.decide("u_1", roles, "t_a", path, method)
    assert (decision.allow, decision.reasons) == (allow, (reason,))
    assert decision.policy_version == engine.version
    assert (decision.matched_rule is not None) is (reason != "no-matching-rule")


def test_deny_rule_beats_allow_and_names_the_deny(engine: PolicyEngine) -> None:
    deny = Rule("admin", "t_a", "/billing/*", "DELETE", "deny")
    engine.set_tenant_rules("t_a", [deny])
    decision = engine.decide("u_1", ("admin", "editor"), "t_a", "/billing/7", "DELETE")
    assert not decision.allow
    assert decision.reasons == ("policy-deny",)
    assert decision.matched_rule == deny.as_tuple()


def test_roles_and_rules_of_one_tenant_never_apply_in_another(engine: PolicyEngine) -> None:
    engine.set_tenant_rules("t_a", [Rule("u_1", "t_a", "/special", "POST")])
    assert engine.decide("u_1", ("editor",), "t_a", "/x", "POST").allow
    assert engine.decide("u_1", (), "t_a", "/special", "POST").allow
    # Same subject in tenant B without roles there: nothing from A carries over.
    assert not engine.decide("u_1", (), "t_b", "/x", "POST").allow
    assert not engine.decide("u_1", (), "t_b", "/special", "POST").allow
    assert not engine.decide("u_1", ("viewer",), "t_b", "/special", "POST").allow


def test_tenant_rules_for_another_domain_are_refused(engine: PolicyEngine) -> None:
    with pytest.raises(PolicyError, match="owning tenant"):
        engine.set_tenant_rules("t_a", [Rule("viewer", "*", "/x", "POST")])
    with pytest.raises(PolicyError, match="owning tenant"):
        engine.set_tenant_rules("t_a", [Rule("viewer", "t_b", "/x", "POST")])


def test_regex_metacharacters_in_rules_are_literal(engine: PolicyEngine) -> None:
    engine.set_tenant_rules("t_a", [Rule("viewer", "t_a", "/api/v1.0/*", "POST")])
    assert engine.decide("u_1", ("viewer",), "t_a", "/api/v1.0/items", "POST").allow
    assert not engine.decide("u_1", ("viewer",), "t_a", "/api/v1x0/items", "POST").allow


def test_role_change_takes_effect_at_once(engine: PolicyEngine) -> None:
    assert engine.decide("u_1", ("editor",), "t_a", "/docs", "POST").allow
    assert not engine.decide("u_1", ("viewer",), "t_a", "/docs", "POST").allow
    assert not engine.decide("u_1", (), "t_a", "/docs", "GET").allow
    assert engine.decide("u_1", ["editor"], "t_a", "/docs", "POST").allow


def test_subject_named_like_a_role_or_the_any_tenant_is_refused(engine: PolicyEngine) -> None:
    assert engine.decide("admin", (), "t_a", "/x", "GET").reasons == ("policy-deny",)
    assert not engine.decide("editor", ("viewer",), "t_a", "/x", "POST").allow
    assert not engine.decide("u_1", ("admin",), "*", "/x", "GET").allow
    assert not engine.decide("", ("admin",), "t_a", "/x", "GET").allow


def test_cache_hit_returns_the_same_decision_until_a_reload(
    engine: PolicyEngine, files: tuple[Path, Path]
) -> None:
    first = engine.decide("u_1", ("viewer",), "t_a", "/x", "GET")
    assert engine.decide("u_1", ("viewer",), "t_a", "/x", "GET") is first
    files[1].write_text(files[1].read_text() + "p, viewer, *, /x, POST, allow\n")
    assert engine.reload() == []
    again = engine.decide("u_1", ("viewer",), "t_a", "/x", "GET")
    assert again is not first
    assert again.policy_version == first.policy_version + 1
    assert engine.decide("u_1", ("viewer",), "t_a", "/x", "POST").allow


def test_invalidate_tenant_bumps_version_and_drops_cached_decisions(engine: PolicyEngine) -> None:
    before = engine.decide("u_1", ("admin",), "t_a", "/b/1", "DELETE")
    engine.set_tenant_rules("t_a", [Rule("admin", "t_a", "/b/*", "DELETE", "deny")])
    after = engine.decide("u_1", ("admin",), "t_a", "/b/1", "DELETE")
    assert before.allow and not after.allow
    assert after.policy_version > before.policy_version


@pytest.mark.parametrize(
    ("target", "text"),
    [
        (1, "p, viewer, *, /*, GET|FETCH, allow\n"),
        (1, "p, viewer, *\n"),
        (0, "[request_definition]\nr = sub, obj\n"),
        (0, "not a model at all"),
    ],
)
def test_bad_reload_keeps_the_old_snapshot(
    engine: PolicyEngine, files: tuple[Path, Path], target: int, text: str
) -> None:
    version = engine.version
    files[target].write_text(text)
    problems = engine.reload()
    assert problems
    assert engine.version == version
    assert engine.decide("u_1", ("viewer",), "t_a", "/x", "GET").allow


def test_missing_files_are_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        PolicyEngine.from_files(tmp_path / "no.conf", tmp_path / "no.csv", freeze_gc=False)


def test_memory_stays_bounded_under_many_unknown_tenants_and_subjects(
    files: tuple[Path, Path],
) -> None:
    limits = EngineLimits(max_tenants=8, max_subjects=16, max_decisions=50)
    engine = PolicyEngine.from_files(*files, limits=limits, freeze_gc=False)
    for i in range(200):
        engine.decide("u_1", ("viewer",), f"t_unknown_{i}", "/x", "GET")
    assert engine.tenant_count == 8
    for i in range(200):
        decision = engine.decide(f"u_{i}", ("editor",), "t_a", f"/p/{i}", "POST")
        assert decision.allow
    tenant = engine.tenant_enforcer("t_a")
    assert tenant is not None
    assert tenant.subject_count <= 16
    assert len(engine._state.decisions) <= 50
    # Links re-applied after the role manager was cleared still decide correctly.
    assert not engine.decide("u_3", ("viewer",), "t_a", "/q", "POST").allow
    assert engine.decide("u_3", ("editor",), "t_a", "/q", "POST").allow


def test_an_exception_in_casbin_fails_closed_and_is_not_cached(
    engine: PolicyEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object) -> tuple[bool, list[str]]:
        raise RuntimeError("matcher exploded")

    monkeypatch.setattr(TenantEnforcer, "enforce", boom)
    decision = engine.decide("u_1", ("admin",), "t_a", "/x", "GET")
    assert (decision.allow, decision.reasons) == (False, ("policy-error",))
    monkeypatch.undo()
    assert engine.decide("u_1", ("admin",), "t_a", "/x", "GET").allow


def test_gc_is_frozen_after_each_load(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(engine_module.gc, "collect", lambda: calls.append("collect"))
    monkeypatch.setattr(engine_module.gc, "freeze", lambda: calls.append("freeze"))
    engine = PolicyEngine.from_files(*files)
    assert engine.reload() == []
    assert calls == ["collect", "freeze", "collect", "freeze"]


class FakeStore:
    """An in-memory TenantRuleStore that can be told to fail."""

    def __init__(self) -> None:
        self.rules: dict[str, list[Rule]] = {}
        self.fail = False
        self.loads = 0

    async def list_rules(self, tenant_id: str) -> list[Rule]:
        self.loads += 1
        if self.fail:
            raise StoreUnavailable("down")
        return list(self.rules.get(tenant_id, []))

    async def replace_rules(
        self, tenant_id: str, rules: Sequence[Rule], audit_event: AuditEvent
    ) -> None:
        self.rules[tenant_id] = list(rules)


async def test_authorize_loads_stored_rules_and_fails_closed_without_them(
    files: tuple[Path, Path],
) -> None:
    store = FakeStore()
    store.rules["t_a"] = [Rule("admin", "t_a", "/b/*", "*", "deny")]
    engine = PolicyEngine.from_files(*files, store=store, freeze_gc=False)
    assert engine.decide("u_1", ("admin",), "t_a", "/b/1", "GET").reasons == ("policy-error",)
    assert not (await engine.authorize("u_1", ("admin",), "t_a", "/b/1", "GET")).allow
    assert (await engine.authorize("u_1", ("admin",), "t_a", "/c", "GET")).allow
    store.fail = True
    decision = await engine.authorize("u_1", ("admin",), "t_b", "/c", "GET")
    assert decision.reasons == ("policy-error",)
    store.fail = False
    store.rules["t_a"] = []
    engine.invalidate_tenant("t_a")
    assert (await engine.authorize("u_1", ("admin",), "t_a", "/b/1", "GET")).allow


async def test_a_store_returning_foreign_rules_fails_closed(files: tuple[Path, Path]) -> None:
    store = FakeStore()
    store.rules["t_a"] = [Rule("viewer", "*", "/*", "*")]
    engine = PolicyEngine.from_files(*files, store=store, freeze_gc=False)
    decision = await engine.authorize("u_1", ("viewer",), "t_a", "/x", "POST")
    assert decision.reasons == ("policy-error",)


async def test_a_swap_during_a_tenant_load_discards_that_load(files: tuple[Path, Path]) -> None:
    store = FakeStore()
    engine = PolicyEngine.from_files(*files, store=store, freeze_gc=False)
    original = store.list_rules

    async def racing(tenant_id: str) -> list[Rule]:
        rules = await original(tenant_id)
        if store.loads == 1:  # the tenant's rules change while the first load is in flight
            store.rules["t_a"] = [Rule("viewer", "t_a", "/x", "GET", "deny")]
            engine.invalidate_tenant("t_a")
        return rules

    store.list_rules = racing  # type: ignore[method-assign]
    assert not (await engine.authorize("u_1", ("viewer",), "t_a", "/x", "GET")).allow
    assert store.loads == 2


class SlowStore(FakeStore):
    """A store whose reads suspend, as a real one's do: concurrent requests overlap."""

    async def list_rules(self, tenant_id: str) -> list[Rule]:
        await asyncio.sleep(0)
        return await super().list_rules(tenant_id)


async def test_concurrent_requests_for_a_cold_tenant_read_and_compile_once(
    files: tuple[Path, Path],
) -> None:
    store = SlowStore()
    store.rules["t_a"] = [Rule("viewer", "t_a", "/x", "GET", "deny")]
    engine = PolicyEngine.from_files(*files, store=store, freeze_gc=False)
    installs = 0
    install = engine._install

    def counted(*args: Any) -> Any:
        nonlocal installs
        installs += 1
        return install(*args)

    engine._install = counted  # type: ignore[method-assign]
    for round_ in range(2):  # cold at start, and again after the tenant's rules change
        decisions = await asyncio.gather(
            *[engine.authorize(f"u_{i}", ("viewer",), "t_a", "/x", "GET") for i in range(20)]
        )
        assert not any(d.allow for d in decisions)  # the stored deny rule applies to all
        assert (store.loads, installs) == (round_ + 1, round_ + 1)
        engine.invalidate_tenant("t_a")


async def test_a_request_after_a_rule_change_never_joins_the_load_it_overtook(
    files: tuple[Path, Path],
) -> None:
    store = FakeStore()
    store.rules["t_a"] = [Rule("viewer", "t_a", "/x", "GET", "deny")]
    engine = PolicyEngine.from_files(*files, store=store, freeze_gc=False)
    first_read, release = asyncio.Event(), asyncio.Event()
    original = store.list_rules

    async def held_first(tenant_id: str) -> list[Rule]:
        rules = await original(tenant_id)
        if store.loads == 1:
            first_read.set()
            await release.wait()
        return rules

    store.list_rules = held_first  # type: ignore[method-assign]
    before = asyncio.ensure_future(engine.authorize("u_1", ("viewer",), "t_a", "/x", "GET"))
    await first_read.wait()  # the old rules are read; the load is still in flight
    store.rules["t_a"] = []  # the deny rule is removed...
    engine.invalidate_tenant("t_a")  # ...and announced
    after = asyncio.ensure_future(engine.authorize("u_1", ("viewer",), "t_a", "/x", "GET"))
    await asyncio.sleep(0)  # `after` starts: a read of its own, or (wrongly) joins `before`
    release.set()
    assert (await after).allow  # decided on the new rules
    await before
    assert engine.decide("u_1", ("viewer",), "t_a", "/x", "GET").allow  # and they stay
    assert store.loads == 2


async def test_watch_files_reloads_on_change(
    engine: PolicyEngine, files: tuple[Path, Path]
) -> None:
    version = engine.version
    watcher = asyncio.create_task(engine.watch_files(interval=0.01))
    try:
        await asyncio.sleep(0.03)
        files[1].write_text(files[1].read_text() + "p, viewer, *, /w, POST, allow\n")
        for _ in range(300):
            if engine.version != version:
                break
            await asyncio.sleep(0.01)
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
    assert engine.version == version + 1
    assert engine.decide("u_1", ("viewer",), "t_a", "/w", "POST").allow


async def test_a_cached_decision_needs_no_store_round_trip(files: tuple[Path, Path]) -> None:
    store = FakeStore()
    limits = EngineLimits(max_tenants=1)
    engine = PolicyEngine.from_files(*files, store=store, limits=limits, freeze_gc=False)
    first = await engine.authorize("u_1", ("viewer",), "t_a", "/x", "GET")
    await engine.authorize("u_1", ("viewer",), "t_b", "/x", "GET")  # evicts t_a's enforcer
    store.fail = True
    assert await engine.authorize("u_1", ("viewer",), "t_a", "/x", "GET") is first
    assert store.loads == 2


def test_reloads_are_counted_in_metrics(engine: PolicyEngine, files: tuple[Path, Path]) -> None:
    from prometheus_client import REGISTRY

    def count(result: str) -> float:
        value = REGISTRY.get_sample_value("gateway_policy_reloads_total", {"result": result})
        return value or 0.0

    ok, error = count("ok"), count("error")
    assert engine.reload() == []
    assert count("ok") == ok + 1
    files[0].write_text("[request_definition]\nr = sub\n")
    assert engine.reload()
    assert count("error") == error + 1
    assert REGISTRY.get_sample_value("gateway_policy_version_info") == engine.version
