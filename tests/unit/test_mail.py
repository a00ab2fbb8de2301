"""Outgoing mail: SMTP to a loopback aiosmtpd sink, the dev outbox, the background queue,
and the mail configuration."""

from __future__ import annotations

import asyncio
import email
import stat
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from gateway.config.sections import MailConfig
from gateway.mail.sender import (
    MailQueue,
    OutboxMailer,
    SmtpMailer,
    build_mailer,
    new_message,
    outbox_dir,
)
from tests.support.net import free_port


class Sink:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_sink() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def smtp_config(port: int) -> MailConfig:
    return MailConfig.model_validate(
        {"smtp_host": "127.0.0.1", "smtp_port": port, "starttls": False, "from": "gw@example.com"}
    )


async def test_smtp_delivers_to_the_sink(smtp_sink: tuple[Sink, int]) -> None:
    sink, port = smtp_sink
    mailer = SmtpMailer(smtp_config(port))
    await mailer.send(new_message("gw@example.com", "ann@example.com", "Hi", "body text\n"))
    [message] = sink.messages
    assert message["Subject"] == "Hi" and message["To"] == "ann@example.com"
    assert "body text" in message.get_payload()
    assert sink.envelopes == [("gw@example.com", ["ann@example.com"])]
    assert mailer.describe() == f"smtp 127.0.0.1:{port}"


async def test_queue_delivers_in_the_background(smtp_sink: tuple[Sink, int]) -> None:
    sink, port = smtp_sink
    config = smtp_config(port)
    queue = MailQueue(build_mailer(config, Path("/unused")), config.sender)
    queue.submit("bob@example.com", "Reset", "link")
    queue.submit("cy@example.com", "Reset", "link")
    await queue.drain()
    assert sorted(m["To"] for m in sink.messages) == ["bob@example.com", "cy@example.com"]
    assert all(m["From"] == "gw@example.com" for m in sink.messages)


async def test_queue_logs_failures_without_content(caplog: pytest.LogCaptureFixture) -> None:
    config = smtp_config(free_port())  # nothing listens there
    queue = MailQueue(SmtpMailer(config, timeout=2), config.sender)
    queue.submit("secret-person@example.com", "Reset", "https://x/?token=SECRET")
    await queue.drain()
    assert "mail delivery failed" in caplog.text
    assert "secret-person" not in caplog.text and "SECRET" not in caplog.text


async def test_outbox_writes_private_eml_files(tmp_path: Path) -> None:
    config = MailConfig()
    mailer = build_mailer(config, tmp_path)
    assert isinstance(mailer, OutboxMailer)
    assert mailer.directory == outbox_dir(config, tmp_path) == tmp_path / "outbox"
    queue = MailQueue(mailer, config.sender)
    queue.submit("ann@example.com", "Verify", "open https://x/?token=abc\n")
    await queue.drain()
    [path] = list((tmp_path / "outbox").glob("*.eml"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    message = email.message_from_bytes(path.read_bytes())
    assert message["To"] == "ann@example.com" and "token=abc" in message.get_payload()
    assert mailer.describe() == f"outbox {tmp_path / 'outbox'}"


def test_mail_config() -> None:
    custom = MailConfig.model_validate({"outbox_dir": "/tmp/x", "smtp_password": "p w"})
    assert outbox_dir(custom, Path("/state")) == Path("/tmp/x")
    assert "p w" not in repr(custom)
    for bad in ({"from": "a@b\r\nBcc: x@y"}, {"from": "nobody"}, {"smtp_host": "h:25"}):
        with pytest.raises(ValueError, match="validation error"):
            MailConfig.model_validate(bad)


async def test_drain_with_nothing_queued() -> None:
    queue = MailQueue(OutboxMailer(Path("/nonexistent")), "gw@example.com")
    await asyncio.wait_for(queue.drain(), 1)
