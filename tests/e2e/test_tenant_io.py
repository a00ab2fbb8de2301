"""`gateway tenants export SLUG` / `gateway tenants import FILE` through the real command line.

CONTRACT "The command line" and issue 9 (export and backup): one JSON document per tenant with
its users, memberships, rules, settings, service accounts, secrets (still encrypted) and audit;
the export contains nothing of another tenant; an import keeps ids, is all or nothing, refuses
what already exists with one line, and `gateway audit verify` passes afterwards.
"""

from __future__ import annotations

import json
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from tests.e2e.auth_helpers import (
    ADMIN_PREFIX,
    PASSWORD,
    Account,
    AuthEnv,
    admin_post,
    auth_env,
    bearer,
    create_api_key,
    create_service_account,
    echo,
    http_client,
    new_email,
    signin,
    signup,
    unique,
)
from tests.support.gateway_proc import base_config, run_cli, run_gateway
from tests.support.upstream import run_echo_upstream

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

SECRET_VALUE = "sk_live_do-not-leak-4711"
RULE = {"sub": "viewer", "obj": "/reports/*", "act": "DELETE", "eft": "deny"}


@dataclass
class Shared:
    """A user who is a member of both tenants."""

    email: str
    user_id: str


@dataclass
class Source:
    """Installation A: tenant `acme` (exported) and tenant `beta`, sharing one user."""

    env: AuthEnv
    config: Path
    admin: Account
    other: Account
    shared: Shared
    api_key: str
    account_id: str
    invited: str
    export: Path
    doc: dict[str, Any]


async def cli(workdir: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    return await run_cli(*args, cwd=workdir, stdin=stdin, timeout=60.0)


def write_config(workdir: Path, config: dict[str, Any]) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def admin_get(env: AuthEnv, http: aiohttp.ClientSession, path: str, session: str) -> Any:
    async with http.get(f"{env.url}{ADMIN_PREFIX}{path}", headers=env.same_origin(session)) as r:
        assert r.status == 200, await r.text()
        return json.loads(await r.read())


async def put_rules(env: AuthEnv, http: aiohttp.ClientSession, admin: Account) -> None:
    headers = {**env.same_origin(admin.session), "Content-Type": "application/json"}
    url = f"{env.url}{ADMIN_PREFIX}/tenants/{admin.tenant_slug}/policy"
    async with http.put(url, data=json.dumps({"rules": [RULE]}), headers=headers) as resp:
        assert resp.status == 200, await resp.text()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def source(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Source]:
    workdir = tmp_path_factory.mktemp("tenant-io")
    async with auth_env(workdir / "a") as env:
        config = env.gw.config_path
        assert config is not None
        cfg = ["--config", str(config)]
        async with http_client() as http:
            admin = await signup(env, http, tenant=unique("acme"))
            other = await signup(env, http, tenant=unique("beta"))
            account = await create_service_account(env, http, admin, name="ci")
            key = (await create_api_key(env, http, admin, account["id"]))["key"]
            await put_rules(env, http, admin)
            invited = new_email()
            status, body = await admin_post(
                env,
                http,
                f"/tenants/{admin.tenant_slug}/invitations",
                {"email": invited, "role": "viewer"},
                env.same_origin(admin.session),
            )
            assert status == 201, body
            # beta has its own service account, rules and secrets: none of it may leak.
            await create_service_account(env, http, other, name="beta-only")
            await put_rules(env, http, other)
        # One user is a member of both tenants: editor of beta, viewer of acme.
        shared = Shared(new_email(), "")
        for tenant, role in ((other.tenant_slug, "editor"), (admin.tenant_slug, "viewer")):
            code, out, err = await cli(
                env.gw.workdir, "users", "create", shared.email, "--tenant", tenant,
                "--role", role, "--password-stdin", *cfg, stdin=PASSWORD.encode() + b"\n",
            )  # fmt: skip
            assert code == 0, (out, err)
            shared.user_id = out.split("(")[1].split(")")[0]
        for tenant in (admin.tenant_slug, other.tenant_slug):
            code, out, err = await cli(
                env.gw.workdir, "secrets", "put", tenant, "api-token", *cfg,
                stdin=SECRET_VALUE.encode(),
            )  # fmt: skip
            assert code == 0, (out, err)
        export = workdir / "acme.json"
        code, out, err = await cli(
            env.gw.workdir, "tenants", "export", admin.tenant_slug, "-o", str(export), *cfg
        )
        assert code == 0, (out, err)
        doc = json.loads(export.read_text())
        yield Source(env, config, admin, other, shared, key, account["id"], invited, export, doc)


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


async def test_export_file_is_private_and_holds_every_section(source: Source) -> None:
    assert stat.S_IMODE(source.export.stat().st_mode) == 0o600
    doc = source.doc
    assert doc["format"] == "gateway-tenant-export" and doc["version"] == 1
    assert doc["tenant"]["id"] == source.admin.tenant_id
    assert doc["tenant"]["slug"] == source.admin.tenant_slug
    emails = sorted(u["email"] for u in doc["users"])
    assert emails == sorted([source.admin.email, source.shared.email])
    assert all(u["password_hash"].startswith("$argon2") for u in doc["users"])
    roles = {m["user_id"]: m["roles"] for m in doc["memberships"]}
    assert roles == {source.admin.user_id: ["admin"], source.shared.user_id: ["viewer"]}
    assert [a["name"] for a in doc["service_accounts"]] == ["ci"]
    assert [k["service_account_id"] for k in doc["api_keys"]] == [source.account_id]
    assert [i["email"] for i in doc["invitations"]] == [source.invited]
    rules = [{k: r[k] for k in ("sub", "obj", "act", "eft")} for r in doc["rules"]]
    assert rules == [RULE]
    assert [(s["name"], s["version"]) for s in doc["secrets"]] == [("api-token", 1)]
    assert doc["secrets"][0]["ciphertext"] and doc["secrets"][0]["wrapped_dek"]
    actions = [e["action"] for e in doc["audit"]]
    assert actions[0] == "auth.signup" and "policy.update" in actions, actions


async def test_export_is_recorded_in_the_tenant_audit_chain(source: Source) -> None:
    code, out, err = await cli(
        source.env.gw.workdir, "audit", "tail", "--tenant", source.admin.tenant_slug,
        "-n", "1", "--config", str(source.config),
    )  # fmt: skip
    assert code == 0, (out, err)
    event = json.loads(out.strip().splitlines()[-1])
    assert event["action"] == "tenant.export" and event["actor"]["type"] == "system"
    assert event["details"]["users"] == 2


async def test_export_contains_nothing_of_another_tenant(source: Source) -> None:
    doc, text = source.doc, source.export.read_text()
    tenant_id = source.admin.tenant_id
    for key in ("memberships", "invitations", "service_accounts", "api_keys", "rules"):
        assert all(row["tenant_id"] == tenant_id for row in doc[key]), key
    assert all(row["tenant_id"] == tenant_id for row in doc["secrets"])
    assert all(e["chain"] == tenant_id and e["tenant_id"] == tenant_id for e in doc["audit"])
    # The shared user's membership in beta, beta itself and beta's own people do not appear.
    assert source.other.tenant_id not in text
    assert source.other.tenant_slug not in text
    assert source.other.email not in text
    assert "beta-only" not in text
    assert len([m for m in doc["memberships"] if m["user_id"] == source.shared.user_id]) == 1


async def test_export_never_holds_a_secret_value_or_key(source: Source) -> None:
    text = source.export.read_text()
    assert SECRET_VALUE not in text
    assert source.api_key not in text
    assert PASSWORD not in text
    assert all("material" not in k for k in source.doc["secret_keks"])


async def test_export_of_an_unknown_tenant_is_one_line(source: Source) -> None:
    code, out, err = await cli(
        source.env.gw.workdir, "tenants", "export", unique("nope"), "--config", str(source.config)
    )
    assert code == 1, (out, err)
    assert err.strip().startswith("gateway: no tenant") and len(err.strip().splitlines()) == 1


async def test_export_refuses_to_overwrite_a_file(source: Source) -> None:
    code, out, err = await cli(
        source.env.gw.workdir, "tenants", "export", source.admin.tenant_slug,
        "-o", str(source.export), "--config", str(source.config),
    )  # fmt: skip
    assert code == 1 and "exists" in err, (out, err)


# --------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------


async def test_import_into_an_empty_installation_works_end_to_end(
    source: Source, tmp_path: Path
) -> None:
    async with run_echo_upstream() as upstream:
        config = base_config(upstream.url, tmp_path, rate_limits={"defaults": False})
        path = write_config(tmp_path, config)
        cfg = ["--config", str(path)]
        code, out, err = await cli(tmp_path, "tenants", "import", str(source.export), *cfg)
        assert code == 0, (out, err)
        assert f"imported tenant {source.admin.tenant_slug} ({source.admin.tenant_id})" in out
        code, out, err = await cli(tmp_path, "audit", "verify", *cfg)
        assert code == 0, (out, err)
        assert f"ok      chain {source.admin.tenant_id}" in out, out

        # A second import of the same file is refused with one line and writes nothing.
        code, again, err = await cli(tmp_path, "tenants", "import", str(source.export), *cfg)
        assert code == 1, (again, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "already exists" in lines[0], err
        code, after, _ = await cli(tmp_path, "audit", "verify", *cfg)
        assert code == 0 and after == out

        # Ids are kept; a re-export holds the same rows (plus the import's own event).
        code, text, err = await cli(tmp_path, "tenants", "export", source.admin.tenant_slug, *cfg)
        assert code == 0, err
        again_doc = json.loads(text)
        for key in ("tenant", "users", "memberships", "invitations", "service_accounts"):
            assert again_doc[key] == source.doc[key], key
        for key in ("api_keys", "rules", "secret_heads", "secrets", "mfa", "recovery_codes"):
            assert again_doc[key] == source.doc[key], key
        imported = again_doc["audit"][len(source.doc["audit"]) :]
        assert again_doc["audit"][: len(source.doc["audit"])] == source.doc["audit"]
        assert [e["action"] for e in imported] == ["tenant.import"]

        # The imported installation serves the tenant: password sign-in, API key, rules.
        async with run_gateway(tmp_path, config) as gw:
            env = AuthEnv(gw, upstream)
            async with http_client() as http:
                status, raw, _ = await signin(env, http, source.admin.email, PASSWORD)
                assert status == 200, raw
                status, body, _ = await echo(env, http, "/echo/x", headers=bearer(source.api_key))
                assert status == 200, body
                status, raw, _ = await signin(
                    env, http, source.shared.email, PASSWORD, tenant=source.other.tenant_slug
                )
                assert status != 200, raw  # beta does not exist here


async def test_import_refuses_an_existing_email_and_writes_nothing(
    source: Source, tmp_path: Path
) -> None:
    state = ["--state-dir", str(tmp_path / "state")]
    code, out, err = await cli(tmp_path, "tenants", "create", unique("local"), *state)
    assert code == 0, (out, err)
    code, out, err = await cli(
        tmp_path, "users", "create", source.shared.email.upper(), "--tenant",
        out.split()[2], "--role", "admin", "--password-stdin", *state,
        stdin=b"another-password-123\n",
    )  # fmt: skip
    assert code == 0, (out, err)
    code, before, _ = await cli(tmp_path, "audit", "verify", *state)
    assert code == 0
    code, out, err = await cli(tmp_path, "tenants", "import", str(source.export), *state)
    assert code == 1, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0] == f"gateway: import refused: user {source.shared.email} already exists"
    code, out, err = await cli(tmp_path, "tenants", "export", source.admin.tenant_slug, *state)
    assert code == 1 and "no tenant" in err, (out, err)
    code, after, _ = await cli(tmp_path, "audit", "verify", *state)
    assert code == 0 and after == before


def _tampered(doc: dict[str, Any], how: str) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(doc))
    if how == "audit":
        copy["audit"][0]["record"]["details"]["slug"] = "someone-else"
    elif how == "foreign-row":
        copy["memberships"][0]["tenant_id"] = "t_other"
    elif how == "stray-user":
        copy["users"].append({**copy["users"][0], "id": "u_stray", "email": "stray@example.com"})
    elif how == "not-an-export":
        copy = {"hello": "world"}
    return copy


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("audit", "does not verify"),
        ("foreign-row", "row of another tenant"),
        ("stray-user", "do not name the same users"),
        ("not-an-export", "not a tenant export"),
    ],
)
async def test_import_refuses_a_tampered_document(
    source: Source, tmp_path: Path, how: str, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_tampered(source.doc, how)))
    state = ["--state-dir", str(tmp_path / "state")]
    code, out, err = await cli(tmp_path, "tenants", "import", str(bad), *state)
    assert code == 1, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], err
    code, out, err = await cli(tmp_path, "tenants", "export", source.admin.tenant_slug, *state)
    assert code == 1 and "no tenant" in err, (out, err)


async def test_import_of_a_file_that_is_not_json_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, out, err = await cli(
        tmp_path, "tenants", "import", str(bad), "--state-dir", str(tmp_path / "s")
    )
    assert code == 1 and err.startswith("gateway: ") and "is not JSON" in err, (out, err)
    assert len(err.strip().splitlines()) == 1


async def test_sqlite_export_imports_into_postgresql_and_back(
    source: Source, tmp_path: Path, postgres_url: str
) -> None:
    config = base_config("http://127.0.0.1:9", tmp_path, database_url=postgres_url)
    path = write_config(tmp_path, config)
    cfg = ["--config", str(path)]
    code, out, err = await cli(tmp_path, "migrate", *cfg)
    assert code == 0, (out, err)
    code, out, err = await cli(tmp_path, "tenants", "import", str(source.export), *cfg)
    assert code == 0, (out, err)
    code, out, err = await cli(tmp_path, "tenants", "import", str(source.export), *cfg)
    assert code == 1 and "already exists" in err, (out, err)
    code, text, err = await cli(tmp_path, "tenants", "export", source.admin.tenant_slug, *cfg)
    assert code == 0, err
    doc = json.loads(text)
    for key in ("tenant", "users", "memberships", "invitations", "service_accounts", "api_keys"):
        assert doc[key] == source.doc[key], key
    for key in ("rules", "secret_keks", "secret_heads", "secrets", "mfa", "recovery_codes"):
        assert doc[key] == source.doc[key], key
    assert doc["audit"][: len(source.doc["audit"])] == source.doc["audit"]
    code, out, err = await cli(tmp_path, "audit", "verify", *cfg)
    assert f"ok      chain {source.admin.tenant_id}" in out, (out, err)
