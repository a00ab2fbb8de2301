"""The optional JSON-lines audit sink, configured by `audit.sink`, in the real process."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.e2e.auth_helpers import PASSWORD, auth_env, http_client, signup

pytestmark = pytest.mark.e2e


async def test_audit_events_are_copied_to_the_configured_file(tmp_path: Path) -> None:
    sink = tmp_path / "audit.jsonl"
    async with auth_env(tmp_path, audit={"sink": str(sink)}) as env, http_client() as http:
        account = await signup(env, http)
        deadline = asyncio.get_running_loop().time() + 10.0
        while not sink.exists() or "auth.signup" not in sink.read_text():
            assert asyncio.get_running_loop().time() < deadline, "no event reached the sink"
            await asyncio.sleep(0.05)
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    signups = [e for e in lines if e["action"] == "auth.signup"]
    assert signups
    assert signups[0]["tenant_id"] == account.tenant_id
    assert PASSWORD not in sink.read_text()
    assert account.session not in sink.read_text()
