"""What the forward-auth tests against real proxies (nginx, Caddy) share: a browser-like
client, sign-up and an API key through the proxy, and what the app received."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.support.upstream import EchoUpstream


def client() -> aiohttp.ClientSession:
    """A client that keeps cookies for 127.0.0.1 (aiohttp's default jar ignores IP hosts)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def signup(http: aiohttp.ClientSession, url: str, email: str, tenant: str) -> Any:
    body = {"email": email, "password": "correct horse battery staple", "tenant": tenant}
    async with http.post(f"{url}/.gateway/auth/signup", json=body) as r:
        assert r.status == 201, await r.text()
        return await r.json()


def received(app: EchoUpstream) -> dict[str, str]:
    return {k.lower(): v for k, v in app.requests[-1]["headers"]}


async def make_api_key(http: aiohttp.ClientSession, url: str, tenant: str) -> str:
    """A viewer service account's API key, made through the proxy by the signed-in admin."""
    admin = f"{url}/.gateway/admin/v1"
    origin = {"Origin": url}
    body = {"name": "reporter", "roles": ["viewer"]}
    accounts = f"{admin}/tenants/{tenant}/service-accounts"
    async with http.post(accounts, json=body, headers=origin) as r:
        assert r.status == 201, await r.text()
        account = (await r.json())["id"]
    async with http.post(f"{admin}/service-accounts/{account}/keys", json={}, headers=origin) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["key"])


async def served_to_api_key(
    url: str, app: EchoUpstream, key: str, forged: dict[str, str]
) -> dict[str, str]:
    """What the app received for an API-key request carrying `forged` identity headers.

    An API key's principal has no email and its tenant no features, so the gateway answers
    those two empty: the proxy must not let the client's copies take their place.
    """
    headers = {**forged, "Authorization": f"Bearer {key}"}
    async with (
        aiohttp.ClientSession() as service,
        service.get(f"{url}/reports/1", headers=headers) as r,
    ):
        assert r.status == 200
    seen = received(app)
    assert seen["x-auth-method"] == "api_key"
    assert seen.get("x-user-email", "") == "" and seen.get("x-tenant-features", "") == ""
    return seen
