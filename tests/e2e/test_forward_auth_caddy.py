"""Forward-auth through real Caddy `forward_auth`, with the shipped example Caddyfile."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.e2e.forward_auth_helpers import (
    client,
    make_api_key,
    received,
    served_to_api_key,
    signup,
)
from tests.support.gateway_proc import base_config, run_gateway, serving
from tests.support.net import free_port
from tests.support.services import service_unavailable
from tests.support.upstream import run_echo_upstream

pytestmark = pytest.mark.e2e

CADDYFILE = Path(__file__).resolve().parents[2] / "examples" / "forward-auth" / "Caddyfile"
CADDY = shutil.which("caddy")
FORGED = {
    "X-Tenant-Id": "t_forged",
    "X-Tenant-Slug": "forged",
    "X-User-Id": "u_forged",
    "X-User-Email": "forged@evil.test",
    "X-User-Roles": "admin",
    "X-Auth-Method": "session",
    "X-Tenant-Features": "everything",
    "X-Gateway-Assertion": "forged.assertion.value",
}


@contextlib.asynccontextmanager
async def run_caddy(tmp: Path, gateway: str, app: str) -> AsyncIterator[str]:
    """Caddy serving the shipped Caddyfile on a free port over plain HTTP; yields its URL."""
    if CADDY is None:
        service_unavailable("caddy is not installed (apt-get install caddy)")
    port = free_port()
    site = CADDYFILE.read_text()
    for name, value in (
        ("app.example.com", f"http://127.0.0.1:{port}"),
        ("gateway:8080", gateway),
        ("app:8000", app),
    ):
        site = site.replace(name, value)
    # Only what a test run needs on top: no admin endpoint, no certificates.
    (tmp / "Caddyfile").write_text("{\n\tadmin off\n\tauto_https off\n}\n" + site)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp / "config"), "XDG_DATA_HOME": str(tmp)}
    cmd = [CADDY, "run", "--adapter", "caddyfile", "--config", str(tmp / "Caddyfile")]
    async with serving(cmd, port, env):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    async with run_echo_upstream() as app:
        # base_config's route: /public/* is public, everything else needs a credential.
        config = base_config(app.url, tmp_path, trusted_proxies=["127.0.0.1/32"])
        async with run_gateway(tmp_path / "gw", config) as gw:
            caddy_dir = tmp_path / "caddy"
            caddy_dir.mkdir()
            addresses = (f"127.0.0.1:{gw.port}", f"127.0.0.1:{app.port}")
            async with run_caddy(caddy_dir, *addresses) as url:
                yield {"url": url, "app": app}


async def test_caddy_passes_verified_identity_and_drops_forged_copies(
    stack: dict[str, Any],
) -> None:
    url, app = stack["url"], stack["app"]
    async with client() as http:
        account = await signup(http, url, "caddy@example.test", "acme-caddy")
        key = await make_api_key(http, url, "acme-caddy")
        async with http.get(f"{url}/reports/1", headers=FORGED) as r:
            assert r.status == 200
        seen = received(app)
        assert seen["x-user-id"] == account["user"]["id"]
        assert (seen["x-tenant-slug"], seen["x-user-roles"]) == ("acme-caddy", "admin")
        assert seen["x-user-email"] == "caddy@example.test"
        assert seen["x-gateway-assertion"] != FORGED["X-Gateway-Assertion"]
    seen = await served_to_api_key(url, app, key, FORGED)
    forged = {name.lower(): value for name, value in FORGED.items()}
    assert not [name for name, value in seen.items() if forged.get(name) == value]


async def test_caddy_drops_identity_headers_spelled_with_underscores_or_dots(
    stack: dict[str, Any],
) -> None:
    # App servers that map headers to CGI-style variables read X_User_Id as X-User-Id.
    url, app = stack["url"], stack["app"]
    variants = CIMultiDict(
        [("X_User_Id", "u_forged"), ("X.User.Roles", "admin"), ("X-User_Email", "forged@evil.test")]
    )
    async with client() as http:
        account = await signup(http, url, "caddy-variants@example.test", "acme-caddy-v")
        async with http.get(f"{url}/reports/1", headers=variants) as r:
            assert r.status == 200
    names = [name for name, _ in app.requests[-1]["headers"]]
    assert not [name for name in names if "_" in name or "." in name], names
    assert received(app)["x-user-id"] == account["user"]["id"]


async def test_caddy_refuses_without_credentials_and_the_app_sees_nothing(
    stack: dict[str, Any],
) -> None:
    url, app = stack["url"], stack["app"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/reports/1", headers=FORGED, allow_redirects=False) as r:
            assert r.status == 401
        # A browser is sent to the login page: Caddy passes the gateway's answer on.
        browser = {**FORGED, "Accept": "text/html"}
        async with http.get(f"{url}/reports/1", headers=browser, allow_redirects=False) as r:
            assert r.status == 302
            assert r.headers["Location"].startswith("/.gateway/login")
    assert app.requests == []


def test_the_caddyfile_drops_every_copied_header_before_asking() -> None:
    # Debian's Caddy (2.6) copies empty answers, so the e2e test above passes without the
    # deletions; Caddy 2.10 does not. This pins them: each copied header is deleted first,
    # inside the `route` that keeps that order.
    text = CADDYFILE.read_text()
    route = text[text.index("route {") :]
    asked = route.index("forward_auth ")
    copied = re.search(r"copy_headers ([^\n]+)", route)
    assert copied is not None
    for name in copied.group(1).split():
        deletion = route.find(f"request_header -{name}\n")
        assert 0 <= deletion < asked, f"{name} is not deleted before forward_auth"


@pytest.mark.parametrize("header", ["X-Original-URI", "X-Forwarded-Uri"])
async def test_a_client_cannot_name_another_uri_for_the_question(
    stack: dict[str, Any], header: str
) -> None:
    # Caddy sets X-Forwarded-Uri, and the shipped Caddyfile deletes a client's X-Original-URI,
    # which the gateway would otherwise read too (and refuses when the two disagree).
    url, app = stack["url"], stack["app"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/public/page") as r:
            assert r.status == 200  # the path named below is public indeed
        spoof = {header: "/public/page"}
        async with http.get(f"{url}/private/report", headers=spoof, allow_redirects=False) as r:
            assert r.status in (302, 400, 401)
    assert [r["path"] for r in app.requests] == ["/public/page"]
