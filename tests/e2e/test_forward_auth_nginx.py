"""Forward-auth through real nginx `auth_request`, with the shipped example configuration."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.forward_auth_helpers import (
    client,
    make_api_key,
    received,
    served_to_api_key,
    signup,
)
from tests.support.gateway_proc import GatewayProcess, base_config, run_gateway, serving
from tests.support.net import free_port, parse_response, raw_request
from tests.support.services import service_unavailable
from tests.support.upstream import EchoUpstream, run_echo_upstream

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "forward-auth"
EXAMPLE = EXAMPLES / "nginx-server.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)

MODULES = Path("/usr/lib/nginx/modules")
# Debian's packages of set-misc (with the ndk it needs), which the shipped block uses for its
# decision-cache key, and of njs, which its documented alternative uses.
NEEDED_MODULES = ("ndk_http_module.so", "ngx_http_set_misc_module.so", "ngx_http_js_module.so")
KEY_START = "        set_quote_json_str $gateway_key_host"
KEY_END = "        # key end\n"

MAIN = """
{modules}
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/server.conf;
}}
"""


def replace_decision_key(server: str, lines: str) -> str:
    """The shipped block with its decision-key lines (from `KEY_START` to `KEY_END`) replaced."""
    start, end = server.index(KEY_START), server.index(KEY_END) + len(KEY_END)
    return server[:start] + lines + server[end:]


def njs_decision_key(server: str) -> str:
    """The shipped block with the njs key it documents instead of set-misc's."""
    script = EXAMPLES / "decision-key.js"
    http = f"js_import gateway_decision from {script};\n"
    http += "js_set $gateway_decision_key gateway_decision.key;\n"
    use = "        set $gateway_decision $gateway_decision_key;\n"
    return http + replace_decision_key(server, use)


@contextlib.asynccontextmanager
async def run_nginx(
    tmp: Path, gateway: str, app: str, key: Callable[[str], str] | None = None
) -> AsyncIterator[tuple[str, Path]]:
    """nginx with the shipped server block (its decision key changed by `key`, if given);
    yields its URL and its decision cache directory."""
    missing = [name for name in NEEDED_MODULES if not (MODULES / name).exists()]
    if NGINX is None or missing:
        install = "apt-get install nginx libnginx-mod-http-set-misc libnginx-mod-http-js"
        service_unavailable(f"nginx or a module it needs is not installed ({install})")
    port = free_port()
    server = EXAMPLE.read_text()
    # nginx's workers (`nobody` under root) must reach the decision cache: not under pytest's
    # private temporary directory.
    cache = Path(tempfile.mkdtemp(prefix="gw-nginx-decisions-"))
    cache.chmod(0o755)
    for name, value in (
        ("LISTEN_ADDR", f"127.0.0.1:{port}"),
        ("GATEWAY_ADDR", gateway),
        ("APP_ADDR", app),
        ("CACHE_DIR", str(cache / "decisions")),
    ):
        server = server.replace(name, value)
    (tmp / "server.conf").write_text(key(server) if key else server)
    modules = "\n".join(f"load_module {MODULES / name};" for name in NEEDED_MODULES)
    (tmp / "nginx.conf").write_text(MAIN.format(tmp=tmp, modules=modules))
    try:
        async with serving([NGINX, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)], port):
            yield f"http://127.0.0.1:{port}", cache
    finally:
        shutil.rmtree(cache, ignore_errors=True)


@contextlib.asynccontextmanager
async def forward_auth_stack(
    tmp_path: Path,
    decision_cache_seconds: int = 0,
    key: Callable[[str], str] | None = None,
    routes: bool = False,
) -> AsyncIterator[dict[str, Any]]:
    """Gateway, app and nginx; with `routes`, base_config's route (/public/* is public),
    else none (every path needs a credential)."""
    async with run_echo_upstream() as app:
        config = base_config(app.url, tmp_path, trusted_proxies=["127.0.0.1/32"])
        if not routes:
            config["upstreams"] = []
        config["rate_limits"] = {"defaults": False, "rules": [LIMITED_RULE]}
        config["forward_auth"] = {"decision_cache_seconds": decision_cache_seconds}
        async with run_gateway(tmp_path / "gw", config) as gw:
            nginx_dir = tmp_path / "nginx"
            nginx_dir.mkdir()
            addresses = (f"127.0.0.1:{gw.port}", f"127.0.0.1:{app.port}")
            async with run_nginx(nginx_dir, *addresses, key) as (url, cache):
                yield {"url": url, "app": app, "gateway": gw, "cache": cache}


LIMITED_RULE = {
    "name": "limited",
    "match": {"path": "/limited/*"},
    "key": ["user"],
    "rate": "1000/s",
    "burst": 100,
}
DECISION_SECONDS = 2


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    async with forward_auth_stack(tmp_path) as found:
        yield found


@pytest.fixture
async def cached_stack(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    async with forward_auth_stack(tmp_path, DECISION_SECONDS) as found:
        yield found


async def answered(gw: GatewayProcess) -> int:
    """Requests the gateway has answered so far, all routes (exact for one worker)."""
    url = f"http://127.0.0.1:{gw.metrics_port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        text = await resp.text()
    return sum(
        int(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "gateway_http_requests_total"
    )


async def test_nginx_auth_request_passes_verified_identity(stack: dict[str, Any]) -> None:
    url, app = stack["url"], stack["app"]
    async with client() as http:
        account = await signup(http, url, "fa@example.test", "acme-fa")
        async with http.get(
            f"{url}/reports/1",
            headers={"X-User-Id": "forged", "X-User-Roles": "admin", "X-Tenant-Id": "t_evil"},
        ) as r:
            assert r.status == 200
        seen = received(app)
        assert seen["x-user-id"] == account["user"]["id"]
        assert seen["x-tenant-slug"] == "acme-fa"
        assert seen["x-user-roles"] == "admin"
        assert seen["x-auth-method"] == "session"
        assert seen["x-request-id"]


async def test_nginx_drops_forged_copies_of_headers_answered_empty(stack: dict[str, Any]) -> None:
    url, app = stack["url"], stack["app"]
    async with client() as http:
        await signup(http, url, "fa-key@example.test", "acme-fa-key")
        key = await make_api_key(http, url, "acme-fa-key")
    forged = {"X-User-Email": "forged@evil.test", "X-Tenant-Features": "everything"}
    await served_to_api_key(url, app, key, forged)


async def test_nginx_unauthenticated_browser_is_sent_to_login(stack: dict[str, Any]) -> None:
    url, app = stack["url"], stack["app"]
    before = len(app.requests)
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{url}/private", headers={"Accept": "text/html"}, allow_redirects=False
        ) as r:
            assert r.status == 302
            assert r.headers["Location"].endswith("/.gateway/login?rd=/private")
        async with http.get(f"{url}/.gateway/login") as r:
            assert r.status == 200
            assert "<form" in await r.text()
    assert len(app.requests) == before


async def test_nginx_denied_request_never_reaches_the_app(stack: dict[str, Any]) -> None:
    url, app = stack["url"], stack["app"]
    async with client() as http:
        await signup(http, url, "fb@example.test", "acme-fb")
        before = len(app.requests)
        resp = await raw_request(
            "127.0.0.1",
            int(url.rsplit(":", 1)[1]),
            b"GET /a/%2e%2e/%2e%2e/etc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        status, _, _ = parse_response(resp)
        assert status in (400, 401, 500)
    assert len(app.requests) == before


async def test_verify_refuses_untrusted_peers(tmp_path: Path) -> None:
    async with run_echo_upstream() as app:
        config = base_config(app.url, tmp_path)  # no trusted proxies
        async with (
            run_gateway(tmp_path / "gw", config) as gw,
            aiohttp.ClientSession() as http,
            http.get(f"{gw.url}/.gateway/verify", headers={"X-Original-URI": "/x"}) as r,
        ):
            assert r.status == 403
            assert (await r.json())["error"]["code"] == "untrusted-proxy"


# -- decisions nginx may reuse (forward_auth.decision_cache_seconds) ----------------------------


async def asked(gw: GatewayProcess, http: aiohttp.ClientSession, url: str, times: int) -> int:
    """How many of `times` GETs of `url` through nginx (each answered 200) reached the gateway."""
    before = await answered(gw)
    for _ in range(times):
        async with http.get(url) as r:
            assert r.status == 200
    return await answered(gw) - before


def received_headers(app: EchoUpstream, index: int) -> dict[str, str]:
    return {k.lower(): v for k, v in app.requests[index]["headers"]}


async def test_no_answer_is_reused_when_decision_caching_is_off(stack: dict[str, Any]) -> None:
    url, app, gw = stack["url"], stack["app"], stack["gateway"]
    async with client() as http:
        await signup(http, url, "off@example.test", "acme-off")
        assert await asked(gw, http, f"{url}/reports/1", 5) == 5
    ids = [received_headers(app, i)["x-request-id"] for i in range(-5, 0)]
    assert len(set(ids)) == 5  # nginx's own id per request


async def test_an_allowed_answer_is_reused_for_the_same_credential_only(
    cached_stack: dict[str, Any],
) -> None:
    url, app, gw = cached_stack["url"], cached_stack["app"], cached_stack["gateway"]
    async with client() as alice, client() as bob:
        ann = await signup(alice, url, "ann@example.test", "acme-ann")
        ben = await signup(bob, url, "ben@example.test", "acme-ben")
        assert await asked(gw, alice, f"{url}/reports/1", 5) == 1  # then reused by nginx
        assert {received_headers(app, i)["x-user-id"] for i in range(-5, 0)} == {ann["user"]["id"]}
        ids = {received_headers(app, i)["x-request-id"] for i in range(-5, 0)}
        assert len(ids) == 5  # a reused answer does not repeat a request id
        assert await asked(gw, bob, f"{url}/reports/1", 1) == 1  # same URL, another session
        seen = received(app)
        assert (seen["x-user-id"], seen["x-tenant-slug"]) == (ben["user"]["id"], "acme-ben")
        assert await asked(gw, alice, f"{url}/reports/2", 1) == 1  # another URL: asked again


async def test_rate_limited_routes_are_asked_every_time(cached_stack: dict[str, Any]) -> None:
    url, gw = cached_stack["url"], cached_stack["gateway"]
    async with client() as http:
        await signup(http, url, "lim@example.test", "acme-lim")
        assert await asked(gw, http, f"{url}/limited/1", 3) == 3


async def test_denials_are_asked_every_time(cached_stack: dict[str, Any]) -> None:
    url, gw = cached_stack["url"], cached_stack["gateway"]
    before = await answered(gw)
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.get(f"{url}/reports/1", allow_redirects=False) as r:
                assert r.status == 302  # to the login page
    assert await answered(gw) - before == 3


async def test_a_revocation_reaches_reused_answers_within_their_lifetime(
    cached_stack: dict[str, Any],
) -> None:
    url = cached_stack["url"]
    async with client() as http:
        await signup(http, url, "rev@example.test", "acme-rev")
        cookie = next(c for c in http.cookie_jar if c.key.startswith("gw_session"))
        session = {"Cookie": f"{cookie.key}={cookie.value}"}
        async with http.get(f"{url}/reports/1") as r:
            assert r.status == 200  # now reusable by nginx
        async with http.post(f"{url}/.gateway/auth/signout", headers={"Origin": url}) as r:
            assert r.status in (200, 204)
    loop = asyncio.get_running_loop()
    revoked = loop.time()
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{url}/reports/1", headers=session, allow_redirects=False) as r:
                if r.status != 200:
                    assert r.status in (302, 401)
                    break
            assert loop.time() - revoked < DECISION_SECONDS + 1.5, "revocation never took effect"
            await asyncio.sleep(0.1)  # nginx's cache expires by the clock: nothing to await


def cache_files(cache: Path) -> list[bytes]:
    return [path.read_bytes() for path in cache.rglob("*") if path.is_file()]


@pytest.mark.parametrize("key", [None, njs_decision_key], ids=["set-misc", "njs"])
async def test_reused_answers_keep_no_credential_in_nginx_files(
    tmp_path: Path, key: Callable[[str], str] | None
) -> None:
    # SECURITY: nginx writes each cache key into its cache file: credentials must not be in it.
    async with forward_auth_stack(tmp_path, DECISION_SECONDS, key) as found:
        await check_no_credential_in_cache(found["url"], found["gateway"], found["cache"])


async def check_no_credential_in_cache(url: str, gw: GatewayProcess, cache: Path) -> None:
    async with client() as http:
        await signup(http, url, "keys@example.test", "acme-keys")
        cookie = next(c for c in http.cookie_jar if c.key.startswith("gw_session"))
        key = await make_api_key(http, url, "acme-keys")
        secret_query = "reset-token-5f2c9a"
        assert await asked(gw, http, f"{url}/reports/1?t={secret_query}", 3) == 1
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as service:
        assert await asked(gw, service, f"{url}/reports/1", 3) == 1
    files = cache_files(cache)
    assert len(files) >= 2  # both answers were kept, so the check below saw them
    for secret in (cookie.value, key, secret_query):
        assert not any(secret.encode() in data for data in files), "a credential is on disk"


async def test_an_empty_decision_key_shares_no_answer(tmp_path: Path) -> None:
    # A key that came out empty: the shipped block must then ask every time, keeping nothing.
    def empty(server: str) -> str:
        return replace_decision_key(server, '        set $gateway_decision "";\n')

    async with forward_auth_stack(tmp_path, DECISION_SECONDS, empty) as found:
        url, app, gw = found["url"], found["app"], found["gateway"]
        async with client() as alice, client() as bob:
            ann = await signup(alice, url, "empty-a@example.test", "acme-empty-a")
            ben = await signup(bob, url, "empty-b@example.test", "acme-empty-b")
            assert await asked(gw, alice, f"{url}/reports/1", 3) == 3
            assert await asked(gw, bob, f"{url}/reports/1", 1) == 1
            assert received(app)["x-user-id"] == ben["user"]["id"] != ann["user"]["id"]
        assert cache_files(found["cache"]) == []


@pytest.mark.parametrize("header", ["X-Original-URI", "X-Forwarded-Uri"])
async def test_a_client_cannot_name_another_uri_for_the_question(
    tmp_path: Path, header: str
) -> None:
    # nginx sets both URI headers; a client's copy of either must not become the question.
    async with forward_auth_stack(tmp_path, routes=True) as found:
        url, app = found["url"], found["app"]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/public/page") as r:
                assert r.status == 200  # the path named below is public indeed
            spoof = {header: "/public/page"}
            async with http.get(f"{url}/private/report", headers=spoof, allow_redirects=False) as r:
                assert r.status in (302, 401)
        assert [r["path"] for r in app.requests] == ["/public/page"]
