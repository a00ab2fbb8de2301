"""The policy author's tools (`gateway policy lint|check|test`) and hot reload of the files.

The running gateway is pointed at copies of the shipped model and rules (`policy:` in the
configuration). Editing the rules file changes decisions within a few seconds without a
restart; a broken model is refused: the gateway keeps deciding with the previous policy and
`gateway policy lint` names the problem.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import Account, AuthEnv, http_client, signup, unique
from tests.e2e.test_authorization import (
    assert_denied,
    assert_proxied,
    call,
    gateway_env,
    invite_member,
)
from tests.support.gateway_proc import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "gateway" / "policy" / "data"
RELOAD_TIMEOUT = 10.0


@dataclass
class Setup:
    env: AuthEnv
    model: Path
    rules: Path
    admin: Account
    editor: Account
    viewer: Account


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def setup(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Setup]:
    workdir = tmp_path_factory.mktemp("policy-cli")
    policy_dir = workdir / "policy"
    policy_dir.mkdir()
    model = policy_dir / "model.conf"
    rules = policy_dir / "policy.csv"
    shutil.copyfile(SHIPPED / "model.conf", model)
    shutil.copyfile(SHIPPED / "policy.csv", rules)
    policy = {"model": str(model), "rules": str(rules)}
    async with gateway_env(workdir, policy=policy) as env:
        async with http_client() as http:
            admin = await signup(env, http, tenant=unique("tc"))
            editor = await invite_member(env, http, admin, "editor")
            viewer = await invite_member(env, http, admin, "viewer")
        yield Setup(env, model, rules, admin, editor, viewer)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_client() as client:
        yield client


async def _until_status(
    setup: Setup, http: aiohttp.ClientSession, method: str, path: str, session: str, want: int
) -> int:
    """Repeats the request with short awaits until it answers `want` (or the timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RELOAD_TIMEOUT
    while True:
        status, _, _ = await call(setup.env, http, method, path, session)
        if status == want or loop.time() > deadline:
            return status
        await asyncio.sleep(0.1)


async def _until_logged(setup: Setup, text: str, count: int) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RELOAD_TIMEOUT
    while True:
        seen = setup.env.gw.logs().count(text)
        if seen >= count or loop.time() > deadline:
            return seen
        await asyncio.sleep(0.1)


# --------------------------------------------------------------------------------------------
# 8. lint / test / check
# --------------------------------------------------------------------------------------------


async def test_lint_of_shipped_files_passes(tmp_path: Path) -> None:
    code, out, err = await run_cli("policy", "lint", cwd=tmp_path)
    assert code == 0, (out, err)
    assert "no problems" in out


async def test_policy_test_on_shipped_cases_passes() -> None:
    code, out, err = await run_cli("policy", "test", cwd=REPO)
    assert code == 0, (out, err)
    code, out, err = await run_cli("policy", "test", str(REPO / "policy" / "tests"), cwd=REPO)
    assert code == 0, (out, err)
    assert "passed" in out


async def test_policy_test_reports_a_wrong_expectation(tmp_path: Path) -> None:
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "wrong.yaml").write_text(
        "cases:\n"
        "  - {name: viewer reads, sub: u_1, roles: [viewer], tenant: t_a, path: /x,"
        " method: GET, expect: allow}\n"
        "  - {name: viewer may delete (wrong), sub: u_1, roles: [viewer], tenant: t_a,"
        " path: /x, method: DELETE, expect: allow}\n"
        "  - {name: editor writes admin (wrong), sub: u_2, roles: [editor], tenant: t_a,"
        " path: /admin/x, method: POST, allow: true}\n"
    )
    code, out, err = await run_cli("policy", "test", str(cases), cwd=tmp_path)
    assert code != 0, (out, err)
    text = out + err
    lines = [line for line in text.splitlines() if "wrong.yaml" in line]
    assert len(lines) == 2, text
    assert "viewer may delete (wrong)" in lines[0] and "expected allow" in lines[0], lines
    assert "editor writes admin (wrong)" in lines[1], lines
    assert "viewer reads" not in text


async def test_policy_test_reports_a_broken_case_file(tmp_path: Path) -> None:
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "broken.yaml").write_text("cases:\n  - {sub: u_1, path: /x, expect: allow}\n")
    code, out, err = await run_cli("policy", "test", str(cases), cwd=tmp_path)
    assert code != 0, (out, err)
    assert "broken.yaml" in out + err


async def test_policy_test_on_a_missing_directory_fails(tmp_path: Path) -> None:
    code, out, err = await run_cli("policy", "test", str(tmp_path / "nope"), cwd=tmp_path)
    assert code != 0, (out, err)
    assert err.strip(), "the error is explained on stderr"


async def test_check_explains_a_deny_with_exit_2(setup: Setup) -> None:
    state = str(setup.env.state_dir)
    code, out, err = await run_cli(
        "policy",
        "check",
        "--state-dir",
        state,
        setup.editor.email,
        setup.admin.tenant_slug,
        "/admin/x",
        "POST",
        cwd=setup.env.gw.workdir,
    )
    assert code == 2, (out, err)
    first = out.splitlines()[0]
    assert first.startswith("deny"), out
    decided = [line for line in out.splitlines() if line.startswith("decided by")]
    assert decided, out
    assert "editor" in decided[0] and "/admin/*" in decided[0] and "deny" in decided[0], out


async def test_check_explains_an_allow_with_exit_0(setup: Setup) -> None:
    state = str(setup.env.state_dir)
    code, out, err = await run_cli(
        "policy",
        "check",
        "--state-dir",
        state,
        setup.admin.email,
        setup.admin.tenant_slug,
        "/admin/x",
        "POST",
        cwd=setup.env.gw.workdir,
    )
    assert code == 0, (out, err)
    assert out.splitlines()[0].startswith("allow"), out
    decided = [line for line in out.splitlines() if line.startswith("decided by")]
    assert decided and "admin" in decided[0] and "allow" in decided[0], out


async def test_check_decides_on_the_normalized_path(setup: Setup) -> None:
    state = str(setup.env.state_dir)
    args = ("--state-dir", state, setup.editor.email, setup.admin.tenant_slug)
    code, out, err = await run_cli(
        "policy", "check", *args, "/x/../%61dmin/x", "post", cwd=setup.env.gw.workdir
    )
    assert code == 2, (out, err)
    assert out.startswith("deny"), out
    code, out, err = await run_cli(
        "policy", "check", *args, "/admin%2fx", "POST", cwd=setup.env.gw.workdir
    )
    assert code not in (0, 2), (out, err)
    assert err.strip(), "a refused path is explained on stderr"


async def test_check_of_an_unknown_user_or_tenant_fails(setup: Setup) -> None:
    state = str(setup.env.state_dir)
    code, out, err = await run_cli(
        "policy",
        "check",
        "--state-dir",
        state,
        "nobody@example.test",
        setup.admin.tenant_slug,
        "/x",
        "GET",
        cwd=setup.env.gw.workdir,
    )
    assert code not in (0, 2) and err.strip(), (code, out, err)
    code, out, err = await run_cli(
        "policy",
        "check",
        "--state-dir",
        state,
        setup.editor.email,
        "no-such-tenant",
        "/x",
        "GET",
        cwd=setup.env.gw.workdir,
    )
    assert code not in (0, 2) and err.strip(), (code, out, err)


# --------------------------------------------------------------------------------------------
# 7. Hot reload of the policy files
# --------------------------------------------------------------------------------------------


async def test_rules_file_reloads_and_a_broken_model_keeps_the_old_policy(
    setup: Setup, http: aiohttp.ClientSession
) -> None:
    env, viewer = setup.env, setup.viewer
    status, body, _ = await call(env, http, "GET", "/x", viewer.session)
    assert_proxied(status, body, "GET", "/x")

    # 1. A new deny for viewers on /x, without a restart.
    with setup.rules.open("a") as f:
        f.write("\n# added by the test\np, viewer, *, /x, GET|HEAD|OPTIONS, deny\n")
    assert await _until_status(setup, http, "GET", "/x", viewer.session, 403) == 403
    status, body, _ = await call(env, http, "GET", "/x", viewer.session)
    assert_denied(status, body)
    status, body, _ = await call(env, http, "GET", "/y", viewer.session)
    assert_proxied(status, body, "GET", "/y")
    status, body, _ = await call(env, http, "GET", "/x", setup.editor.session)
    assert_proxied(status, body, "GET", "/x")
    code, out, err = await run_cli(
        "policy", "lint", "--config", str(env.gw.config_path), cwd=env.gw.workdir
    )
    assert code == 0, (out, err)

    # 2. A broken model: the gateway refuses it and keeps deciding as before.
    good_model = setup.model.read_text()
    refused_before = env.gw.logs().count("reload refused")
    setup.model.write_text(
        good_model.replace(
            "e = some(where (p.eft == allow)) && !some(where (p.eft == deny))",
            "e = some(where (p.eft == allow))",
        )
    )
    seen = await _until_logged(setup, "reload refused", refused_before + 1)
    assert seen > refused_before, env.gw.logs()[-3000:]
    status, body, _ = await call(env, http, "GET", "/x", viewer.session)
    assert_denied(status, body)
    status, body, _ = await call(env, http, "POST", "/admin/x", setup.editor.session)
    assert_denied(status, body)
    status, body, _ = await call(env, http, "GET", "/y", viewer.session)
    assert_proxied(status, body, "GET", "/y")

    code, out, err = await run_cli(
        "policy", "lint", "--config", str(env.gw.config_path), cwd=env.gw.workdir
    )
    assert code != 0, (out, err)
    assert "model.conf" in err and "policy_effect" in err, err

    # 3. A model that does not parse at all, and a rules file with a broken line.
    setup.model.write_text("this is not a casbin model\n[matchers\n")
    seen = await _until_logged(setup, "reload refused", refused_before + 2)
    assert seen > refused_before + 1, env.gw.logs()[-3000:]
    status, body, _ = await call(env, http, "GET", "/x", viewer.session)
    assert_denied(status, body)
    code, out, err = await run_cli(
        "policy", "lint", "--config", str(env.gw.config_path), cwd=env.gw.workdir
    )
    assert code != 0 and "model.conf" in err, (out, err)

    setup.model.write_text(good_model)
    rules_text = setup.rules.read_text()
    with setup.rules.open("a") as f:
        f.write("p, viewer, *, /y\n")
    seen = await _until_logged(setup, "reload refused", refused_before + 3)
    assert seen > refused_before + 2, env.gw.logs()[-3000:]
    status, body, _ = await call(env, http, "GET", "/x", viewer.session)
    assert_denied(status, body)
    status, body, _ = await call(env, http, "GET", "/y", viewer.session)
    assert_proxied(status, body, "GET", "/y")
    code, out, err = await run_cli(
        "policy", "lint", "--config", str(env.gw.config_path), cwd=env.gw.workdir
    )
    assert code != 0, (out, err)
    broken_line = len(rules_text.splitlines()) + 1
    assert f"policy.csv:{broken_line}" in err, err

    # 4. Fixed files: the deny is removed again, still without a restart.
    setup.rules.write_text((SHIPPED / "policy.csv").read_text())
    assert await _until_status(setup, http, "GET", "/x", viewer.session, 200) == 200
    status, body, _ = await call(env, http, "GET", "/x", viewer.session)
    assert_proxied(status, body, "GET", "/x")
    code, out, err = await run_cli(
        "policy", "lint", "--config", str(env.gw.config_path), cwd=env.gw.workdir
    )
    assert code == 0, (out, err)
