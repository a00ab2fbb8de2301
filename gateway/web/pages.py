"""Hosted pages for browsers: login, sign-up, sign-out. Plain HTML forms, no JavaScript.

Every interpolated value is HTML-escaped; pages are served with a strict Content-Security-
Policy, no caching, and `frame-ancestors 'none'` against clickjacking.
"""

from __future__ import annotations

from html import escape

from aiohttp import web

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}"
    "label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}"
    "button{margin-top:1rem;padding:.5rem 1rem}.error{color:#a00}.note{color:#555}"
)
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def page(title: str, body: str, status: int = 200) -> web.Response:
    """A complete HTML page with the hosted pages' security headers."""
    text = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=text, status=status, content_type="text/html", headers=PAGE_HEADERS)


def _error(message: str | None) -> str:
    return f'<p class="error" role="alert">{escape(message)}</p>' if message else ""


def login_page(
    rd: str, error: str | None = None, email: str = "", status: int = 200
) -> web.Response:
    """The sign-in form; it posts email, password and rd to /.gateway/login."""
    body = (
        f"{_error(error)}"
        '<form method="post" action="/.gateway/login">'
        f'<input type="hidden" name="rd" value="{escape(rd)}">'
        '<label for="email">Email</label>'
        f'<input id="email" name="email" type="email" autocomplete="username" required '
        f'value="{escape(email)}">'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" '
        'autocomplete="current-password" required>'
        '<button type="submit">Sign in</button></form>'
        f'<p class="note"><a href="/.gateway/signup?rd={escape(rd)}">Create an account</a></p>'
    )
    return page("Sign in", body, status)


def signup_page(
    rd: str,
    error: str | None = None,
    email: str = "",
    tenant: str = "",
    invitation: str = "",
    status: int = 200,
) -> web.Response:
    """The sign-up form: a new tenant, or joining one with an invitation token."""
    tenant_field = (
        f'<input type="hidden" name="invitation" value="{escape(invitation)}">'
        if invitation
        else '<label for="tenant">Organisation (a short name: letters, digits, dashes)</label>'
        f'<input id="tenant" name="tenant" required pattern="[a-z0-9-]{{2,63}}" '
        f'value="{escape(tenant)}">'
    )
    body = (
        f"{_error(error)}"
        '<form method="post" action="/.gateway/signup">'
        f'<input type="hidden" name="rd" value="{escape(rd)}">'
        '<label for="email">Email</label>'
        f'<input id="email" name="email" type="email" autocomplete="username" required '
        f'value="{escape(email)}">'
        '<label for="password">Password (at least 10 characters)</label>'
        '<input id="password" name="password" type="password" autocomplete="new-password" '
        'minlength="10" required>'
        f"{tenant_field}"
        '<button type="submit">Create account</button></form>'
        '<p class="note"><a href="/.gateway/login">I have an account</a></p>'
    )
    return page("Create an account", body, status)


def logout_page(signed_in: bool) -> web.Response:
    """A confirmation form: signing out is a POST, so a link or image cannot do it."""
    if not signed_in:
        return page(
            "Signed out", '<p>You are signed out.</p><p><a href="/.gateway/login">Sign in</a></p>'
        )
    body = (
        '<form method="post" action="/.gateway/logout">'
        '<p>Sign out of this session?</p><button type="submit">Sign out</button></form>'
    )
    return page("Sign out", body)


def message_page(title: str, message: str, status: int) -> web.Response:
    """A plain page for browser-facing errors (403, 404 …)."""
    return page(title, f"<p>{escape(message)}</p>", status)
