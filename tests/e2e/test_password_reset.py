"""Password reset and change against the real `gateway serve` process, with mail going to a
loopback SMTP sink (aiosmtpd) or, without SMTP, to the dev outbox."""

from __future__ import annotations

import asyncio
import email
import re
import time
from collections.abc import AsyncIterator, Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiosmtpd.controller import Controller

from tests.e2e.auth_helpers import (
    PASSWORD,
    AuthEnv,
    assert_error,
    auth_env,
    http_client,
    new_email,
    post_json,
    session_info,
    set_cookie_value,
    signin,
    signup,
)
from tests.support.net import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

NEW_PASSWORD = "quiet-harbor-lantern-77"
REQUEST = "/.gateway/auth/password/reset/request"
CONFIRM = "/.gateway/auth/password/reset/confirm"
CHANGE = "/.gateway/auth/password/change"


class Sink:
    """An aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture(scope="module")
def sink() -> Iterator[tuple[Sink, int]]:
    handler, port = Sink(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(
    tmp_path_factory: pytest.TempPathFactory, sink: tuple[Sink, int]
) -> AsyncIterator[AuthEnv]:
    mail = {"smtp_host": "127.0.0.1", "smtp_port": sink[1], "starttls": False, "from": "gw@t.io"}
    async with auth_env(tmp_path_factory.mktemp("reset"), mail=mail) as running:
        yield running


async def mail_to(sink: Sink, address: str, timeout: float = 10.0) -> Message:
    """The first message to `address` (polls until it arrives)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in sink.messages:
            if message["To"] == address:
                return message
        await asyncio.sleep(0.02)
    raise AssertionError(f"no mail to {address}")


def token_of(message: Message) -> str:
    match = re.search(r"token=([A-Za-z0-9_-]{43})", str(message.get_payload()))
    assert match, message.get_payload()
    return match.group(1)


async def test_reset_by_mail_revokes_sessions_and_is_single_use(
    env: AuthEnv, sink: tuple[Sink, int]
) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        status, body, _ = await post_json(http, f"{env.url}{REQUEST}", {"email": account.email})
        assert status == 202, body
        message = await mail_to(sink[0], account.email)
        assert message["From"] == "gw@t.io"
        link = f"{env.url}/.gateway/reset/confirm?token="
        assert link in str(message.get_payload())
        token = token_of(message)
        status, body, _ = await post_json(
            http, f"{env.url}{CONFIRM}", {"token": token, "password": NEW_PASSWORD}
        )
        assert status == 200, body
        assert (await session_info(env, http, account.session))[0] == 401
        assert (await signin(env, http, account.email, PASSWORD))[0] == 401
        assert (await signin(env, http, account.email, NEW_PASSWORD))[0] == 200
        status, body, _ = await post_json(
            http, f"{env.url}{CONFIRM}", {"token": token, "password": "another-long-pass-1"}
        )
        assert status == 400
        assert_error(body, "token-invalid")


async def test_reset_request_never_reveals_whether_the_email_exists(
    env: AuthEnv, sink: tuple[Sink, int]
) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        known = await post_json(http, f"{env.url}{REQUEST}", {"email": account.email})
        unknown_address = new_email()
        unknown = await post_json(http, f"{env.url}{REQUEST}", {"email": unknown_address})
        assert (known[0], known[1]) == (unknown[0], unknown[1])
        await mail_to(sink[0], account.email)
        assert all(m["To"] != unknown_address for m in sink[0].messages)
        status, body, _ = await post_json(
            http, f"{env.url}{CONFIRM}", {"token": "x" * 43, "password": NEW_PASSWORD}
        )
        assert status == 400
        assert_error(body, "token-invalid")


async def test_password_change_revokes_the_other_sessions(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        _, _, resp = await signin(env, http, account.email, PASSWORD)
        other = set_cookie_value(resp, env.cookie_name)
        assert other
        url, headers = f"{env.url}{CHANGE}", env.same_origin(account.session)
        wrong = {"current_password": "not-the-password-1", "new_password": NEW_PASSWORD}
        status, body, _ = await post_json(http, url, wrong, headers)
        assert status == 403
        assert_error(body, "invalid-credentials")
        weak = {"current_password": PASSWORD, "new_password": "short"}
        status, body, _ = await post_json(http, url, weak, headers)
        assert status == 422
        good = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
        cross_site = {**env.cookie(account.session), "Origin": "https://evil.example"}
        assert (await post_json(http, url, good, cross_site))[0] == 403
        status, body, _ = await post_json(http, url, good, headers)
        assert status == 200, body
        assert (await session_info(env, http, other))[0] == 401
        assert (await session_info(env, http, account.session))[0] == 200
        assert (await signin(env, http, account.email, NEW_PASSWORD))[0] == 200


async def test_without_smtp_mail_goes_to_the_outbox(tmp_path: Path) -> None:
    async with auth_env(tmp_path / "gw") as outbox_env, http_client() as http:
        account = await signup(outbox_env, http)
        status, _, _ = await post_json(http, f"{outbox_env.url}{REQUEST}", {"email": account.email})
        assert status == 202
        outbox = outbox_env.state_dir / "outbox"
        deadline = time.monotonic() + 10
        while not list(outbox.glob("*.eml")) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        [path] = list(outbox.glob("*.eml"))
        assert path.stat().st_mode & 0o077 == 0
        token = token_of(email.message_from_bytes(path.read_bytes()))
        # The hosted pages: the link's form, then the new password.
        async with http.get(f"{outbox_env.url}/.gateway/reset/confirm?token={token}") as resp:
            assert resp.status == 200 and token in await resp.text()
        async with http.post(
            f"{outbox_env.url}/.gateway/reset/confirm",
            data={"token": token, "password": NEW_PASSWORD},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/.gateway/login"
        assert (await signin(outbox_env, http, account.email, NEW_PASSWORD))[0] == 200
