"""The restore drill on the embedded default: back up a running gateway, destroy its state,
restore, start again, sign in, and verify the audit chain."""

from __future__ import annotations

import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from tests.e2e.auth_helpers import (
    INSECURE_COOKIE,
    PASSWORD,
    AuthEnv,
    http_client,
    signin,
    signup,
    unique,
)
from tests.support.gateway_proc import base_config, run_cli, run_gateway
from tests.support.upstream import run_echo_upstream

pytestmark = [pytest.mark.e2e]


async def test_restore_drill(tmp_path: Path) -> None:
    archive = tmp_path / "backup.tar.gz"
    async with run_echo_upstream() as upstream:
        config = base_config(upstream.url, tmp_path / "gw", rate_limits={"defaults": False})
        async with run_gateway(tmp_path / "gw", config) as gw:
            env = AuthEnv(gw, upstream, INSECURE_COOKIE)
            async with http_client() as http:
                admin = await signup(env, http, tenant=unique("drill"))
            cfg = ["--config", str(gw.config_path)]
            code, out, err = await run_cli("backup", str(archive), *cfg, cwd=gw.workdir)
            assert code == 0, (out, err)
            code, before, err = await run_cli("audit", "verify", *cfg, cwd=gw.workdir)
            assert code == 0, (before, err)
        assert stat.S_IMODE(archive.stat().st_mode) == 0o600
        shutil.rmtree(env.state_dir)
        code, out, err = await run_cli("restore", str(archive), *cfg, cwd=gw.workdir)
        assert code == 0, (out, err)
        code, out, err = await run_cli("restore", str(archive), *cfg, cwd=gw.workdir)
        assert code == 1 and "exists" in err
        async with run_gateway(tmp_path / "gw", config) as gw:
            env = AuthEnv(gw, upstream, INSECURE_COOKIE)
            async with http_client() as http:
                status, raw, _ = await signin(env, http, admin.email, PASSWORD)
            assert status == 200, raw
            code, after, err = await run_cli("audit", "verify", *cfg, cwd=gw.workdir)
            assert code == 0, (after, err)
            assert f"chain {admin.tenant_id}" in after


async def test_restore_refuses_unexpected_entries(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../escape")
    state = tmp_path / "state"
    code, _, err = await run_cli("restore", str(evil), "--state-dir", str(state), cwd=tmp_path)
    assert code == 1 and "unexpected entry" in err
    assert not (tmp_path / "escape").exists()
