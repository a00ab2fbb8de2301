"""E-mail verification against the real `gateway serve` process, mail in the dev outbox."""

from __future__ import annotations

import asyncio
import email
import re
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import (
    AuthEnv,
    assert_error,
    auth_env,
    http_client,
    post_json,
    signup,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

REQUEST = "/.gateway/auth/email/verify/request"
VERIFY = "/.gateway/auth/email/verify"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AuthEnv]:
    async with auth_env(tmp_path_factory.mktemp("verify")) as running:
        yield running


async def token_for(env: AuthEnv, address: str, timeout: float = 10.0) -> str:
    """The token of the newest outbox message to `address` (polls until it arrives)."""
    outbox = env.state_dir / "outbox"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(outbox.glob("*.eml"), reverse=True) if outbox.exists() else []:
            message = email.message_from_bytes(path.read_bytes())
            if message["To"] == address:
                match = re.search(r"verify-email\?token=([A-Za-z0-9_-]{43})", str(message))
                assert match, str(message)
                return match.group(1)
        await asyncio.sleep(0.02)
    raise AssertionError(f"no mail to {address}")


async def test_verification_link_works_once(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        status, body, _ = await post_json(
            http, f"{env.url}{REQUEST}", {}, env.same_origin(account.session)
        )
        assert status == 202, body
        token = await token_for(env, account.email)
        status, body, _ = await post_json(http, f"{env.url}{VERIFY}", {"token": token})
        assert status == 200, body
        assert body == {"user": {"id": account.user_id, "email": account.email}, "verified": True}
        status, body, _ = await post_json(http, f"{env.url}{VERIFY}", {"token": token})
        assert status == 400
        assert_error(body, "token-invalid")
        # Once verified, no new link is sent.
        status, body, _ = await post_json(
            http, f"{env.url}{REQUEST}", {}, env.same_origin(account.session)
        )
        assert status == 200 and body == {"status": "verified"}


async def test_verification_needs_a_session_and_a_real_token(env: AuthEnv) -> None:
    async with http_client() as http:
        status, body, _ = await post_json(http, f"{env.url}{REQUEST}", {}, {"Origin": env.origin})
        assert status == 401
        for token in ("", "x" * 43, "../../etc/passwd"):
            status, body, _ = await post_json(http, f"{env.url}{VERIFY}", {"token": token})
            assert status == 400, token
            assert_error(body, "token-invalid")


async def test_hosted_verification_page_confirms_with_a_button(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        await post_json(http, f"{env.url}{REQUEST}", {}, env.same_origin(account.session))
        token = await token_for(env, account.email)
        page_url = f"{env.url}/.gateway/verify-email?token={token}"
        async with http.get(page_url) as resp:
            assert resp.status == 200
            assert 'method="post"' in await resp.text()
        # GET changed nothing: the token still works, once.
        form_url = f"{env.url}/.gateway/verify-email"
        async with http.post(form_url, data={"token": token}) as resp:
            assert resp.status == 200 and "confirmed" in await resp.text()
        async with http.post(form_url, data={"token": token}) as resp:
            assert resp.status == 400
