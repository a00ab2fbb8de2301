"""Hosted account pages: the MFA step, MFA enrolment (with a QR code), password reset and
e-mail verification. Plain forms, no JavaScript; every interpolated value is escaped except
the QR code, an SVG that `segno` generates from the otpauth URI (no scripts, no links).
"""

from __future__ import annotations

from html import escape

from aiohttp import web

from gateway.identity.mfa import Enrollment, qr_svg
from gateway.web.pages import page


def _error(message: str | None) -> str:
    return f'<p class="error" role="alert">{escape(message)}</p>' if message else ""


def _hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{name}" value="{escape(value)}">'


def _code_field(label: str) -> str:
    return (
        f'<label for="code">{escape(label)}</label>'
        '<input id="code" name="code" autocomplete="one-time-code" inputmode="numeric" '
        'maxlength="32" required>'
    )


def mfa_page(
    rd: str, error: str | None = None, status: int = 200, *, step_up: bool = False
) -> web.Response:
    """The sign-in's second step, or a step-up before an admin action: a TOTP or recovery
    code."""
    why = "<p>Enter a code again to confirm it is you before this change.</p>" if step_up else ""
    body = (
        f"{_error(error)}{why}"
        '<form method="post" action="/.gateway/mfa">'
        f"{_hidden('rd', rd)}{_code_field('Code from your authenticator app, or a recovery code')}"
        '<button type="submit">Continue</button></form>'
    )
    return page("Two-step verification", body, status)


def enroll_start_page(
    rd: str, required: bool, error: str | None = None, status: int = 200
) -> web.Response:
    """Explains MFA and starts the enrolment with a POST (GET never creates a secret)."""
    why = "Your organisation requires it for your role. " if required else ""
    body = (
        f"{_error(error)}<p>{why}Protect your account with an authenticator app.</p>"
        '<form method="post" action="/.gateway/mfa/enroll">'
        f"{_hidden('rd', rd)}"
        '<button type="submit">Set up two-step verification</button></form>'
    )
    return page("Set up two-step verification", body, status)


def enroll_page(rd: str, enrolment: Enrollment) -> web.Response:
    """The QR code, the secret, the recovery codes (shown once) and the confirmation form."""
    codes = "".join(f"<li><code>{escape(c)}</code></li>" for c in enrolment.recovery_codes)
    body = (
        "<p>Scan this code with your authenticator app:</p>"
        f'<div class="qr">{qr_svg(enrolment.otpauth_uri)}</div>'
        f"<p>Or enter this key: <code>{escape(enrolment.secret)}</code></p>"
        "<p>Keep these recovery codes somewhere safe; each works once:</p>"
        f"<ul>{codes}</ul>"
        '<form method="post" action="/.gateway/mfa/enroll/confirm">'
        f"{_hidden('rd', rd)}{_code_field('Code from your authenticator app')}"
        '<button type="submit">Turn on</button></form>'
    )
    return page("Set up two-step verification", body)


def reset_request_page(error: str | None = None, status: int = 200) -> web.Response:
    body = (
        f"{_error(error)}"
        '<form method="post" action="/.gateway/reset">'
        '<label for="email">Email</label>'
        '<input id="email" name="email" type="email" autocomplete="username" required>'
        '<button type="submit">Send a reset link</button></form>'
    )
    return page("Reset your password", body, status)


def reset_confirm_page(token: str, error: str | None = None, status: int = 200) -> web.Response:
    body = (
        f"{_error(error)}"
        '<form method="post" action="/.gateway/reset/confirm">'
        f"{_hidden('token', token)}"
        '<label for="password">New password (at least 10 characters)</label>'
        '<input id="password" name="password" type="password" autocomplete="new-password" '
        'minlength="10" required>'
        '<button type="submit">Set password</button></form>'
    )
    return page("Choose a new password", body, status)


def verify_email_page(token: str) -> web.Response:
    """A button: link scanners that fetch the URL must not use the token up."""
    body = (
        '<form method="post" action="/.gateway/verify-email">'
        f"{_hidden('token', token)}"
        '<button type="submit">Confirm my email address</button></form>'
    )
    return page("Confirm your email address", body)
