"""The session cookie: its name, its attributes, and reading it back safely.

Guarantees: the cookie is always `HttpOnly; SameSite=Lax; Path=/`, never has a `Domain`, and
is `Secure` whenever `cookie.secure` is on (then named `__Host-gw_session`, which browsers
only accept under exactly those attributes); reading returns a token only when exactly one
distinct value is present under our name.
"""

from __future__ import annotations

from aiohttp import web

from gateway.config.sections import CookieConfig

SECURE_NAME = "__Host-gw_session"
INSECURE_NAME = "gw_session"


def cookie_name(config: CookieConfig) -> str:
    """The configured name, else `__Host-gw_session` (secure) or `gw_session` (plain HTTP)."""
    if config.name:
        return config.name
    return SECURE_NAME if config.secure else INSECURE_NAME


def set_session_cookie(
    response: web.StreamResponse, token: str, config: CookieConfig, max_age: int | None = None
) -> None:
    """Sets the session cookie; it lives `max_age` seconds (default: the session lifetime)."""
    response.set_cookie(
        cookie_name(config),
        token,
        max_age=config.lifetime if max_age is None else max_age,
        path="/",
        # SECURITY: no Domain, so sibling subdomains never receive the session.
        domain=None,
        # SECURITY: Secure keeps the token off plain HTTP; HttpOnly keeps it from scripts.
        secure=config.secure,
        httponly=True,
        # SECURITY: Lax withholds the cookie from cross-site subrequests and POSTs (CSRF).
        samesite="Lax",
    )


def clear_session_cookie(response: web.StreamResponse, config: CookieConfig) -> None:
    """Expires the session cookie with the same attributes it was set with.

    A `__Host-` cookie can only be overwritten by a `Set-Cookie` that is itself Secure with
    `Path=/` and no Domain, so the deletion repeats the attributes exactly.
    """
    response.del_cookie(
        cookie_name(config), path="/", secure=config.secure, httponly=True, samesite="Lax"
    )


def read_session_token(source: web.BaseRequest | str | None, config: CookieConfig) -> str | None:
    """The session token from a request (or a raw `Cookie` header value), or None.

    Cookies under other names are ignored. If the name occurs more than once with different
    values the request is treated as having no session.
    """
    if source is None:
        return None
    headers = [source] if isinstance(source, str) else source.headers.getall("Cookie", [])
    name = cookie_name(config)
    values = {value for header in headers for value in _values_named(header, name)}
    # SECURITY: cookie tossing: a sibling subdomain or a path-scoped cookie can plant a second
    # `gw_session` next to ours, and picking either one could log the victim into the
    # attacker's session (or pin a known one). Ambiguity means no session, never a guess.
    if len(values) != 1:
        return None
    return values.pop() or None


def _values_named(header: str, name: str) -> list[str]:
    """Every value of cookie `name` (exact, case-sensitive) in one `Cookie` header."""
    found = []
    for pair in header.split(";"):
        key, sep, value = pair.strip().partition("=")
        if sep and key.strip() == name:
            found.append(value.strip())
    return found
