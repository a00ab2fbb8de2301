"""Sending mail: SMTP when `mail.smtp_host` is set, else files in a dev outbox.

Messages carry one-time links (verification, password reset), so neither their bodies nor
their recipients are ever logged; outbox files are created mode 0600 in a 0700 directory.
Delivery runs in the background (`MailQueue`) so that no response's timing depends on
whether a message was sent, which would tell whether an address is registered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from gateway.config.sections import MailConfig

log = logging.getLogger(__name__)

OUTBOX_DIR = "outbox"


class Mailer(Protocol):
    """Delivers one message; raises on failure."""

    async def send(self, message: EmailMessage) -> None: ...

    def describe(self) -> str:
        """Where mail goes, for start-up logs and the demo banner (no secrets)."""
        ...


def new_message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    """A plain-text message; ASCII bodies stay 7bit, so links are readable in the outbox."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body, cte="7bit" if body.isascii() else "quoted-printable")
    return message


class SmtpMailer:
    """SMTP submission with optional STARTTLS and authentication."""

    def __init__(self, config: MailConfig, timeout: float = 10.0) -> None:
        assert config.smtp_host is not None
        self._config = config
        self._timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        config = self._config
        password = config.smtp_password.get_secret_value() if config.smtp_password else None
        await aiosmtplib.send(
            message,
            hostname=config.smtp_host,
            port=config.smtp_port,
            username=config.smtp_username,
            password=password,
            start_tls=config.starttls,
            timeout=self._timeout,
        )

    def describe(self) -> str:
        return f"smtp {self._config.smtp_host}:{self._config.smtp_port}"


class OutboxMailer:
    """Development mail: each message is one `.eml` file in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._write, message.as_bytes())

    def _write(self, data: bytes) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{secrets.token_hex(4)}.eml"
        # SECURITY: the message holds a one-time link; only the gateway's user may read it.
        fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    def describe(self) -> str:
        return f"outbox {self.directory}"


def outbox_dir(config: MailConfig, state_root: Path) -> Path:
    """The configured outbox directory, else `<state_dir>/outbox`."""
    return config.outbox_dir or state_root / OUTBOX_DIR


def build_mailer(config: MailConfig, state_root: Path) -> Mailer:
    """SMTP when a host is configured, else the outbox."""
    if config.smtp_host is not None:
        return SmtpMailer(config)
    return OutboxMailer(outbox_dir(config, state_root))


class MailQueue:
    """Background delivery: `submit` returns at once; failures are logged without content."""

    def __init__(self, mailer: Mailer, sender: str) -> None:
        self.mailer = mailer
        self.sender = sender
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, to: str, subject: str, body: str) -> None:
        message = new_message(self.sender, to, subject, body)
        task = asyncio.get_running_loop().create_task(self._deliver(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, message: EmailMessage) -> None:
        try:
            await self.mailer.send(message)
        except Exception as exc:
            # No recipient, no body: the message holds a one-time link.
            log.warning(
                "mail delivery failed: %s", type(exc).__name__, extra={"action": "mail.send"}
            )

    async def drain(self) -> None:
        """Waits for every submitted message (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
