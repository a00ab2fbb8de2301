"""The audit stream against the real `gateway serve`: reading, verifying, streaming, exporting.

Events carry actor, tenant, outcome, ip and request id and never a password or a token;
tenant admins read their tenant only (another tenant answers 404); `gateway audit verify`
names a tampered event; the event stream delivers within 100 ms and resumes without loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import (
    ADMIN_PREFIX,
    Account,
    AuthEnv,
    http_client,
    new_email,
    signin,
    signup,
    unique,
)
from tests.e2e.test_authorization import admin_call, cli_member, gateway_env, invite_member
from tests.support.gateway_proc import gateway_command, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@dataclass
class Org:
    env: AuthEnv
    admin: Account
    member: Account
    other: Account
    operator: str
    invitation: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def org(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Org]:
    async with gateway_env(tmp_path_factory.mktemp("audit")) as env:
        async with http_client() as http:
            admin = await signup(env, http, tenant=unique("ta"))
            member = await invite_member(env, http, admin, "editor")
            other = await signup(env, http, tenant=unique("tb"))
            ops = await signup(env, http, tenant=unique("tc"))
            _, invitation = await invite(env, http, admin)
            await signin(env, http, admin.email, "wrong-password-123")
        _, operator = await cli_member(env, ops.tenant_slug, "viewer", operator=True)
        yield Org(env, admin, member, other, operator, invitation)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_client() as client:
        yield client


async def invite(env: AuthEnv, http: aiohttp.ClientSession, admin: Account) -> tuple[float, str]:
    """Creates an invitation (one audit event); returns when the response came and the token."""
    status, body = await admin_call(
        env, http, "POST", f"/tenants/{admin.tenant_slug}/invitations", admin.session,
        {"email": new_email(), "role": "viewer"},
    )  # fmt: skip
    assert status == 201, body
    return time.monotonic(), str(body["invitation"])


async def audit(org: Org, http: aiohttp.ClientSession, session: str, query: str = "") -> Any:
    status, body = await admin_call(org.env, http, "GET", f"/audit{query}", session)
    assert status == 200, body
    return body["events"]


async def test_events_record_actor_tenant_outcome_ip_and_request_id(
    org: Org, http: aiohttp.ClientSession
) -> None:
    events = await audit(org, http, org.operator, "?action=auth.signin&limit=1000")
    ok = [e for e in events if e["outcome"] == "success" and e["target"] == org.admin.user_id]
    failed = [e for e in events if e["outcome"] == "failure" and e["target"] == org.admin.user_id]
    assert failed and failed[-1]["details"]["reason"] == "bad-password"
    created = await audit(org, http, org.admin.session, "?action=invitation.create")
    assert created
    for event in (failed[-1], created[-1], *ok):
        assert event["ip"] == "127.0.0.1" and event["request_id"], event
        assert event["actor"]["type"] in ("user", "anonymous"), event
        assert len(event["hash"]) == 64 and len(event["prev_hash"]) == 64
    assert created[-1]["tenant_id"] == org.admin.tenant_id
    assert created[-1]["actor"] == {"type": "user", "id": org.admin.user_id}


async def test_no_secret_in_any_event(org: Org, http: aiohttp.ClientSession) -> None:
    events = await audit(org, http, org.operator, "?limit=1000")
    text = json.dumps(events)
    for secret in (
        "plum-tractor-nebula-42", "wrong-password-123", org.admin.session, org.member.session,
        org.other.session, org.operator, org.invitation,
    ):  # fmt: skip
        assert secret not in text


async def test_tenant_admin_reads_their_tenant_only(org: Org, http: aiohttp.ClientSession) -> None:
    events = await audit(org, http, org.admin.session, "?limit=1000")
    assert events and {e["tenant_id"] for e in events} == {org.admin.tenant_id}
    for query in (f"?tenant={org.other.tenant_slug}", f"?tenant={org.other.tenant_id}"):
        status, body = await admin_call(org.env, http, "GET", f"/audit{query}", org.admin.session)
        assert status == 404, body
    status, body = await admin_call(org.env, http, "GET", "/audit", org.member.session)
    assert status == 403, body


async def test_newest_last_limit_and_paging(org: Org, http: aiohttp.ClientSession) -> None:
    everything = await audit(org, http, org.admin.session, "?limit=1000")
    seqs = [e["seq"] for e in everything]
    assert seqs == sorted(seqs)
    last_two = await audit(org, http, org.admin.session, "?limit=2")
    assert [e["seq"] for e in last_two] == seqs[-2:]
    page = await audit(org, http, org.admin.session, f"?after={seqs[0]}&limit=2")
    assert [e["seq"] for e in page] == seqs[1:3]
    since = await audit(org, http, org.admin.session, f"?since={everything[-1]['ts']}")
    assert since and since[0]["ts"] >= everything[-1]["ts"]
    status, body = await admin_call(org.env, http, "GET", "/audit?limit=0", org.admin.session)
    assert status == 400, body


class EventStream:
    """A minimal Server-Sent Events reader over an aiohttp response."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.comments: list[str] = []

    async def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        fields: dict[str, str] = {}
        while True:
            line = (await asyncio.wait_for(self.resp.content.readline(), timeout)).decode()
            line = line.rstrip("\n")
            if line.startswith(":"):
                self.comments.append(line)
            elif line == "" and "data" in fields:
                return {**json.loads(fields["data"]), "sse_id": int(fields["id"])}
            elif line:
                name, _, value = line.partition(": ")
                fields[name] = value

    async def next_comment(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in c for c in self.comments):
            line = await asyncio.wait_for(self.resp.content.readline(), deadline - time.monotonic())
            if line.startswith(b":"):
                self.comments.append(line.decode())


async def open_stream(
    org: Org, http: aiohttp.ClientSession, session: str, query: str = "", last_id: int | None = None
) -> aiohttp.ClientResponse:
    headers = org.env.cookie(session)
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    resp = await http.get(f"{org.env.url}{ADMIN_PREFIX}/audit/stream{query}", headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    return resp


async def test_stream_delivers_within_100ms_and_resumes(
    org: Org, http: aiohttp.ClientSession
) -> None:
    resp = await open_stream(org, http, org.admin.session)
    stream = EventStream(resp)
    await stream.next_comment("connected", 5.0)
    done_at, _ = await invite(org.env, http, org.admin)
    first = await stream.next_event()
    assert time.monotonic() - done_at < 0.1
    assert first["action"] == "invitation.create" and first["sse_id"] == first["seq"]
    resp.close()
    await invite(org.env, http, org.admin)
    await invite(org.env, http, org.admin)
    resumed = EventStream(await open_stream(org, http, org.admin.session, last_id=first["sse_id"]))
    got = [await resumed.next_event(), await resumed.next_event()]
    assert [e["action"] for e in got] == ["invitation.create"] * 2
    assert got[0]["seq"] > first["seq"] and got[1]["seq"] > got[0]["seq"]
    resumed.resp.close()


async def test_stream_is_tenant_scoped_and_keeps_alive(
    org: Org, http: aiohttp.ClientSession
) -> None:
    status, body = await admin_call(
        org.env, http, "GET", f"/audit/stream?tenant={org.other.tenant_slug}", org.admin.session
    )
    assert status == 404, body
    mine = EventStream(await open_stream(org, http, org.other.session, "?keepalive=1"))
    await invite(org.env, http, org.admin)  # tenant A: not for tenant B's admin
    await invite(org.env, http, org.other)
    event = await mine.next_event()
    assert event["tenant_id"] == org.other.tenant_id
    await mine.next_comment("keep-alive", 3.0)
    mine.resp.close()


async def cli(org: Org, *args: str) -> tuple[int, str, str]:
    return await run_cli(*args, "--config", str(org.env.gw.config_path), cwd=org.env.gw.workdir)


async def test_export_and_tail_contain_one_tenant(org: Org) -> None:
    code, out, err = await cli(org, "audit", "export", "--tenant", org.admin.tenant_slug)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines and {e["tenant_id"] for e in lines} == {org.admin.tenant_id}
    assert lines[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(lines))
    assert org.other.tenant_id not in out and org.other.email not in out
    code, out, err = await cli(org, "audit", "tail", "-n", "3", "--tenant", org.admin.tenant_slug)
    assert code == 0, err
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [e["seq"] for e in lines[-3:]]


async def test_tail_follow_prints_new_events(org: Org, http: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        *gateway_command(
            "audit", "tail", "-f", "-n", "0", "--config", str(org.env.gw.config_path)
        ),
        cwd=org.env.gw.workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        # The command may start after an invitation: make new ones until one is printed.
        while not any(e["action"] == "invitation.create" for e in seen):
            assert time.monotonic() < deadline, seen
            await invite(org.env, http, org.admin)
            with contextlib.suppress(TimeoutError):
                line = await asyncio.wait_for(proc.stdout.readline(), 1.0)
                seen.append(json.loads(line))
    finally:
        proc.terminate()
        await proc.wait()


async def test_verify_names_a_tampered_event(org: Org) -> None:
    code, out, err = await cli(org, "audit", "verify")
    assert code == 0, (out, err)
    assert "verified" in out
    db = sqlite3.connect(org.env.state_dir / "gateway.db")
    try:
        seq, event_id, record = db.execute(
            "SELECT seq, id, record FROM audit_events WHERE tenant_id = ? ORDER BY seq LIMIT 1 "
            "OFFSET 1",
            (org.admin.tenant_id,),
        ).fetchone()
        forged = record.replace('"outcome":"success"', '"outcome":"failure"')
        assert forged != record
        db.execute("UPDATE audit_events SET record = ? WHERE seq = ?", (forged, seq))
        db.commit()
    finally:
        db.close()
    code, out, err = await cli(org, "audit", "verify")
    assert code == 1, (out, err)
    assert f"chain {org.admin.tenant_id}" in out and f"seq {seq}" in out and event_id in out
    assert "modified" in out
