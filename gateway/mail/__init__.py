"""Outgoing mail: SMTP (aiosmtplib) when configured, else a dev outbox directory."""

from gateway.mail.sender import (
    Mailer,
    MailQueue,
    OutboxMailer,
    SmtpMailer,
    build_mailer,
    new_message,
    outbox_dir,
)

__all__ = [
    "MailQueue",
    "Mailer",
    "OutboxMailer",
    "SmtpMailer",
    "build_mailer",
    "new_message",
    "outbox_dir",
]
