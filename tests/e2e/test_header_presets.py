"""Header presets: oauth2-proxy names upstream, every configured name stripped inbound."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.auth_helpers import auth_env, echo, http_client, signup, upstream_headers

pytestmark = pytest.mark.e2e

FORGED = {
    "X-Forwarded-User": "forged",
    "x_forwarded_email": "forged@evil.test",
    "X.Forwarded.Groups": "admin",
    "X-Forwarded-Preferred-Username": "forged",
    "X-Roles": "superuser",
}


async def test_oauth2_proxy_preset_names_and_stripping(tmp_path: Path) -> None:
    headers = {"preset": "oauth2-proxy", "names": {"user_roles": "X-Roles"}}
    async with auth_env(tmp_path, headers=headers) as env, http_client() as http:
        account = await signup(env, http)
        status, body, _ = await echo(
            env, http, "/app", headers={**env.cookie(account.session), **FORGED}
        )
        assert status == 200
        seen = upstream_headers(body)
        assert seen["x-forwarded-user"] == account.user_id
        assert seen["x-forwarded-email"] == account.email
        assert seen["x-forwarded-preferred-username"] == account.email
        assert seen["x-roles"] == "admin"
        assert seen["x-tenant-id"] == account.tenant_id
        assert "x-user-id" not in seen
        assert "x-forwarded-groups" not in seen  # renamed to X-Roles by `names`
        values = [v for k, v in body["headers"] if k.lower().startswith("x")]
        assert "forged" not in values
        assert "forged@evil.test" not in values
        assert "superuser" not in values


async def test_public_paths_get_no_identity_but_are_still_stripped(tmp_path: Path) -> None:
    async with auth_env(tmp_path, headers={"preset": "oauth2-proxy"}) as env, http_client() as http:
        account = await signup(env, http)
        status, body, _ = await echo(
            env, http, "/public/x", headers={**env.cookie(account.session), **FORGED}
        )
        assert status == 200
        seen = upstream_headers(body)
        for name in ("x-forwarded-user", "x-forwarded-email", "x-roles", "x-tenant-id"):
            assert name not in seen or seen[name] != "forged"
        assert "x-forwarded-user" not in seen
