"""Helpers for the identity end-to-end tests: a gateway plus echo upstream, accounts, cookies.

Cookies are handled by hand (the HTTP sessions use a `DummyCookieJar`), so every test states
exactly which credential each request carries.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.gateway_proc import GatewayProcess, base_config, run_gateway
from tests.support.upstream import EchoUpstream, run_echo_upstream

PASSWORD = "plum-tractor-nebula-42"
INSECURE_COOKIE = "gw_session"
SECURE_COOKIE = "__Host-gw_session"
ADMIN_PREFIX = "/.gateway/admin/v1"


@dataclass
class AuthEnv:
    """A running gateway in front of a running echo upstream."""

    gw: GatewayProcess
    upstream: EchoUpstream
    cookie_name: str = INSECURE_COOKIE

    @property
    def url(self) -> str:
        return self.gw.url

    @property
    def origin(self) -> str:
        """The gateway's own origin, as a browser would send it in `Origin`."""
        return f"http://127.0.0.1:{self.gw.port}"

    @property
    def state_dir(self) -> Path:
        return self.gw.workdir / "state"

    def cookie(self, value: str) -> dict[str, str]:
        """A `Cookie` header carrying the session token `value`."""
        return {"Cookie": f"{self.cookie_name}={value}"}

    def same_origin(self, value: str) -> dict[str, str]:
        """Session cookie plus a same-origin `Origin`: what a browser sends from our pages."""
        return {**self.cookie(value), "Origin": self.origin}


@contextlib.asynccontextmanager
async def auth_env(workdir: Path, **extra: Any) -> AsyncIterator[AuthEnv]:
    """Starts an echo upstream and a real `gateway serve` in front of it.

    Built-in rate limits are switched off so that repeated sign-ins measure the identity code,
    not the limiter; `extra` replaces top-level config keys.
    """
    async with run_echo_upstream() as upstream:
        config = base_config(upstream.url, workdir, **extra)
        config.setdefault("rate_limits", {"defaults": False})
        secure = bool(config.get("cookie", {}).get("secure", True))
        async with run_gateway(workdir, config) as gw:
            yield AuthEnv(gw, upstream, SECURE_COOKIE if secure else INSECURE_COOKIE)


def http_client() -> aiohttp.ClientSession:
    """A client that never stores or replays cookies by itself."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())


def unique(prefix: str) -> str:
    """A fresh name that is also a valid tenant slug."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_email() -> str:
    return f"{unique('user')}@example.test"


def set_cookie_headers(resp: aiohttp.ClientResponse) -> list[str]:
    return list(resp.headers.getall("Set-Cookie", []))


def set_cookie_value(resp: aiohttp.ClientResponse, name: str) -> str | None:
    """The value a response sets for cookie `name` (None when it does not set it)."""
    found = None
    for header in set_cookie_headers(resp):
        first = header.split(";", 1)[0]
        key, sep, value = first.partition("=")
        if sep and key.strip() == name:
            found = value.strip().strip('"')
    return found


def cookie_attributes(header: str) -> tuple[str, str, dict[str, str]]:
    """(name, value, {lower-case attribute: value}) of one `Set-Cookie` header."""
    first, *attrs = (part.strip() for part in header.split(";"))
    name, _, value = first.partition("=")
    parsed: dict[str, str] = {}
    for attr in attrs:
        key, _, val = attr.partition("=")
        parsed[key.strip().lower()] = val.strip()
    return name.strip(), value.strip(), parsed


def upstream_headers(body: Mapping[str, Any]) -> dict[str, str]:
    """The echo upstream's received headers, lower-cased names (last value wins)."""
    return {k.lower(): v for k, v in body["headers"]}


def upstream_header_list(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every header the echo upstream received, in order, duplicates kept."""
    return [(k, v) for k, v in body["headers"]]


@dataclass
class Account:
    """A signed-up user and the session cookie value it got."""

    email: str
    password: str
    user_id: str
    tenant_id: str
    tenant_slug: str
    roles: list[str]
    session: str


async def post_json(
    http: aiohttp.ClientSession,
    url: str,
    body: Any,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """POSTs `body` as JSON; returns (status, parsed body or None, response)."""
    async with http.post(
        url,
        data=json.dumps(body),
        headers={"Content-Type": "application/json", **(headers or {})},
        allow_redirects=False,
    ) as resp:
        raw = await resp.read()
    return resp.status, json.loads(raw) if raw else None, resp


async def signup(
    env: AuthEnv,
    http: aiohttp.ClientSession,
    *,
    email: str | None = None,
    password: str = PASSWORD,
    tenant: str | None = None,
    invitation: str | None = None,
) -> Account:
    """Signs up through the JSON API and asserts the 201."""
    email = email or new_email()
    body: dict[str, str] = {"email": email, "password": password}
    if invitation is not None:
        body["invitation"] = invitation
    else:
        body["tenant"] = tenant or unique("t")
    status, data, resp = await post_json(http, f"{env.url}/.gateway/auth/signup", body)
    assert status == 201, data
    session = set_cookie_value(resp, env.cookie_name)
    assert session, set_cookie_headers(resp)
    return Account(
        email=email,
        password=password,
        user_id=data["user"]["id"],
        tenant_id=data["tenant"]["id"],
        tenant_slug=data["tenant"]["slug"],
        roles=data["roles"],
        session=session,
    )


async def signin(
    env: AuthEnv,
    http: aiohttp.ClientSession,
    email: str,
    password: str,
    tenant: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes, aiohttp.ClientResponse]:
    """POSTs to the sign-in API; returns (status, raw body bytes, response)."""
    body: dict[str, str] = {"email": email, "password": password}
    if tenant is not None:
        body["tenant"] = tenant
    async with http.post(
        f"{env.url}/.gateway/auth/signin",
        data=json.dumps(body),
        headers={"Content-Type": "application/json", **(headers or {})},
    ) as resp:
        raw = await resp.read()
    return resp.status, raw, resp


async def session_info(
    env: AuthEnv, http: aiohttp.ClientSession, session: str
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """GET /.gateway/auth/session with the given cookie value."""
    async with http.get(f"{env.url}/.gateway/auth/session", headers=env.cookie(session)) as resp:
        raw = await resp.read()
    return resp.status, json.loads(raw) if raw else None, resp


async def csrf_token(env: AuthEnv, http: aiohttp.ClientSession, session: str) -> str:
    """The `X-CSRF-Token` the session endpoint hands out for this session."""
    status, body, resp = await session_info(env, http, session)
    assert status == 200, body
    token = resp.headers.get("X-CSRF-Token")
    assert token, dict(resp.headers)
    return token


async def echo(
    env: AuthEnv,
    http: aiohttp.ClientSession,
    path: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """A proxied request; returns (status, JSON body or raw text, response)."""
    async with http.request(
        method, f"{env.url}{path}", headers=dict(headers or {}), allow_redirects=False, **kwargs
    ) as resp:
        raw = await resp.read()
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return resp.status, parsed, resp


async def admin_post(
    env: AuthEnv,
    http: aiohttp.ClientSession,
    path: str,
    body: Any,
    headers: Mapping[str, str],
) -> tuple[int, Any]:
    """POST to the admin API; returns (status, parsed body)."""
    status, data, _ = await post_json(http, f"{env.url}{ADMIN_PREFIX}{path}", body, headers)
    return status, data


def assert_error(body: Any, code: str | None = None) -> None:
    """The contract's error shape: `{"error": {"code", "message"}}`."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"], body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body


async def create_service_account(
    env: AuthEnv,
    http: aiohttp.ClientSession,
    admin: Account,
    roles: list[str] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Creates a service account in the admin's tenant (cookie + same-origin) and returns it."""
    status, body = await admin_post(
        env,
        http,
        f"/tenants/{admin.tenant_slug}/service-accounts",
        {"name": name or unique("sa"), "roles": roles or ["viewer"]},
        env.same_origin(admin.session),
    )
    assert status == 201, body
    return dict(body)


async def create_api_key(
    env: AuthEnv,
    http: aiohttp.ClientSession,
    admin: Account,
    account_id: str,
    body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Creates an API key for a service account and returns the 201 body (with `key`)."""
    status, data = await admin_post(
        env,
        http,
        f"/service-accounts/{account_id}/keys",
        dict(body or {}),
        env.same_origin(admin.session),
    )
    assert status == 201, data
    return dict(data)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
