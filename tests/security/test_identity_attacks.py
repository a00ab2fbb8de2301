"""Identity, session, tenant, method and upgrade attacks against the real `gateway serve`.

Complements tests/e2e (test_tenancy, test_csrf, test_api_keys, test_auth_api, test_proxy):
only tricks those do not already pin are here. Every case names its source.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import (
    Account,
    AuthEnv,
    http_client,
    set_cookie_value,
    signup,
    unique,
)
from tests.e2e.test_authorization import admin_call, gateway_env, invite_member
from tests.security.harness import assert_no_leak, head, requests_with, send
from tests.support.net import parse_response, raw_request

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

RATE_PATHS = [f"/public/rl{i}" for i in range(12)]


@dataclass
class World:
    env: AuthEnv
    alice: Account
    viewer: Account
    mallory: Account
    """Alice admins tenant A (with a viewer); Mallory admins tenant B."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    rules = [
        {"name": f"rl{i}", "match": {"path": f"{p}/*"}, "key": ["ip"], "rate": "1/h", "burst": 2}
        for i, p in enumerate(RATE_PATHS)
    ]
    async with gateway_env(
        tmp_path_factory.mktemp("identity"),
        tenancy={"header": True, "path_prefix": True},
        rate_limits={"defaults": False, "rules": rules},
        limits={"max_header_bytes": 8192},
    ) as env:
        async with http_client() as http:
            alice = await signup(env, http, tenant=unique("ta"))
            viewer = await invite_member(env, http, alice, "viewer")
            mallory = await signup(env, http, tenant=unique("tb"))
            deny = {"sub": "viewer", "obj": "/secret/*", "act": "*", "eft": "deny"}
            path = f"/tenants/{alice.tenant_slug}/policy"
            status, body = await admin_call(
                env, http, "PUT", path, alice.session, {"rules": [deny]}
            )
            assert status == 200, body
        yield World(env, alice, viewer, mallory)


def cookie_line(env: AuthEnv, session: str) -> str:
    return f"Cookie: {env.cookie_name}={session}\r\n"


def seen_headers(record: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in record["headers"]}


# ---------------------------------------------------------------------------------------
# Identity-header spoofing, in every spelling
# ---------------------------------------------------------------------------------------

SPOOFED = [
    # Default names in odd cases and with `_`/`.`: servers that map `_`→`-` (nginx with
    # underscores_in_headers, WSGI/CGI HTTP_X_USER_ID) read them as the real header.
    # Source: oauth2-proxy advisory on underscore header smuggling (X_Forwarded_Email) and the
    # same class in Pomerium/Oathkeeper header mutators.
    "X-User-Id",
    "x-user-id",
    "X-USER-ID",
    "X_User_Id",
    "x_user_id",
    "X.User.Id",
    "x.USER_id",
    "X-Tenant-Id",
    "X_Tenant_Slug",
    "x-user-email",
    "X-User-Roles",
    "X_Auth_Method",
    "X-Tenant-Features",
    # A forged assertion would be trusted by a lax app that checks only its presence.
    "X-Gateway-Assertion",
    # oauth2-proxy preset names and its auth_request response headers (X-Auth-Request-*).
    "X-Forwarded-User",
    "X_Forwarded_Email",
    "X-Forwarded-Groups",
    "X-Forwarded-Preferred-Username",
    "X-Forwarded-Access-Token",
    "X-Auth-Request-User",
    "X_Auth_Request_Email",
    "X-Auth-Request-Access-Token",
    # Address/scheme headers apps use for allow-lists (Traefik CVE-2024-45410 /
    # GHSA-62c8-mh53-4cqv: a client could remove or alter X-Forwarded-*).
    "X-Real-IP",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Port",
    "Forwarded",
]


@pytest.mark.parametrize("name", SPOOFED)
async def test_forged_identity_header_never_reaches_the_upstream(world: World, name: str) -> None:
    env = world.env
    forged = f"forged-{uuid.uuid4().hex}"
    marker = uuid.uuid4().hex
    for path, auth in (
        (f"/public/{marker}", ""),
        (f"/app/{marker}", cookie_line(env, world.alice.session)),
    ):
        status, _, raw = await send(env, head(env, path, extra=f"{auth}{name}: {forged}\r\n"))
        assert status == 200, raw[:300]
    records = requests_with(env, marker)
    assert len(records) == 2
    assert not requests_with(env, forged), f"{name} reached the upstream"


async def test_duplicate_and_mixed_spellings_all_removed_and_real_value_kept(world: World) -> None:
    """Two copies in two spellings, one per line: some proxies strip only the first
    (Envoy and oauth2-proxy class of duplicate-header stripping bugs)."""
    env = world.env
    forged = f"forged-{uuid.uuid4().hex}"
    extra = (
        cookie_line(env, world.alice.session)
        + f"X-User-Id: {forged}\r\nx_user_id: {forged}\r\nX.User.Id: {forged}\r\n"
    )
    marker = uuid.uuid4().hex
    status, _, _ = await send(env, head(env, f"/app/{marker}", extra=extra))
    assert status == 200
    (record,) = requests_with(env, marker)
    ids = [v for k, v in record["headers"] if k.lower() == "x-user-id"]
    assert ids == [world.alice.user_id]
    assert forged not in json.dumps(record)


async def test_connection_header_cannot_drop_gateway_headers(world: World) -> None:
    """Traefik CVE-2021-32813 and CVE-2024-45410: `Connection: X-Forwarded-For, X-User-Id`
    made the proxy remove the headers it had just set."""
    env = world.env
    marker = uuid.uuid4().hex
    extra = cookie_line(env, world.alice.session) + (
        "Connection: close, X-User-Id, X-Forwarded-For, X-Gateway-Assertion, X-Tenant-Id\r\n"
    )
    data = f"GET /app/{marker} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()
    raw = await raw_request(env.gw.host, env.gw.port, data)
    assert parse_response(raw)[0] == 200
    seen = seen_headers(requests_with(env, marker)[0])
    assert seen["x-user-id"] == world.alice.user_id
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert "x-gateway-assertion" in seen and "x-tenant-id" in seen


async def test_forward_auth_answers_every_identity_header_even_when_empty(world: World) -> None:
    """Authelia GHSA-68wm-pfjf-wqp6 class: a forward-auth answer that omits a header lets the
    client's own copy through the front proxy. An untrusted caller is refused outright."""
    env = world.env
    async with (
        http_client() as http,
        http.get(
            f"{env.url}/.gateway/verify",
            headers={"X-Forwarded-Uri": "/public/x", "X-User-Id": "forged"},
        ) as resp,
    ):
        assert resp.status == 403  # 127.0.0.1 is not in trusted_proxies here
        assert "forged" not in await resp.text()


# ---------------------------------------------------------------------------------------
# Method override smuggling
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        "X-HTTP-Method-Override: DELETE\r\n",
        "X_HTTP_Method_Override: DELETE\r\n",
        "X-HTTP-Method: DELETE\r\n",
        "X-Method-Override: DELETE\r\n",
        "x.http.method.override: DELETE\r\n",
    ],
    ids=["override", "underscore", "x-http-method", "x-method-override", "dotted"],
)
async def test_method_override_header_cannot_turn_a_read_into_a_write(
    world: World, extra: str
) -> None:
    """A viewer may GET but not DELETE; frameworks (Express method-override, Symfony,
    Rails) honour these headers, so the policy would decide on GET while the app deletes.
    Source: the method-override class noted in Ory Oathkeeper and Pomerium hardening."""
    env = world.env
    marker = uuid.uuid4().hex
    auth = cookie_line(env, world.viewer.session)
    status, _, _ = await send(env, head(env, f"/app/{marker}", extra=auth + extra))
    assert status == 200
    (record,) = requests_with(env, marker)
    names = {k.lower().replace("_", "-").replace(".", "-") for k, _ in record["headers"]}
    assert not names & {"x-http-method-override", "x-http-method", "x-method-override"}
    assert record["method"] == "GET"


async def test_method_override_query_is_not_interpreted(world: World) -> None:
    """`?_method=DELETE` (Rails/Laravel form convention) is data: the policy decides on the
    real method and the gateway itself never honours it."""
    env = world.env
    marker = uuid.uuid4().hex
    auth = cookie_line(env, world.viewer.session)
    status, _, _ = await send(env, head(env, f"/app/{marker}?_method=DELETE", extra=auth))
    assert status == 200
    (record,) = requests_with(env, marker)
    assert record["method"] == "GET"
    # And a viewer's real DELETE is denied whatever the query says.
    extra = auth + f"Origin: {env.origin}\r\n"
    status, _, _ = await send(
        env, head(env, f"/app/{marker}-w?_method=GET", method="DELETE", extra=extra)
    )
    assert status == 403
    assert not requests_with(env, f"{marker}-w")


# ---------------------------------------------------------------------------------------
# Upgrades: WebSocket bypass and h2c
# ---------------------------------------------------------------------------------------

H2C_SETTINGS = "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
WS_KEY = "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
CL0 = "Content-Length: 0\r\n"


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        # h2c smuggling (Bishop Fox 2020; Traefik, Envoy and Caddy advisories): after the
        # 101 the client talks HTTP/2 straight to the upstream, past every check.
        (
            "POST",
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" + H2C_SETTINGS + CL0,
        ),
        (
            "GET",
            "Connection: upgrade\r\nUpgrade: H2C\r\n" + H2C_SETTINGS,
        ),
        (
            "GET",
            "Connection: Upgrade\r\nUpgrade: websocket, h2c\r\n" + WS_KEY,
        ),
        # WebSocket on a method other than GET (RFC 6455 allows only GET).
        (
            "POST",
            "Connection: Upgrade\r\nUpgrade: websocket\r\n" + WS_KEY + CL0,
        ),
        # Other protocols: TLS upgrade (RFC 2817) and arbitrary tokens.
        ("GET", "Connection: Upgrade\r\nUpgrade: TLS/1.2\r\n"),
        ("OPTIONS", "Connection: Upgrade\r\nUpgrade: foo/1\r\n"),
    ],
    ids=["h2c-post", "h2c-get-uppercase", "ws-and-h2c-list", "ws-post", "tls-upgrade", "other"],
)
async def test_non_websocket_upgrades_are_refused_before_the_upstream(
    world: World, method: str, extra: str
) -> None:
    env = world.env
    marker = uuid.uuid4().hex
    status, parsed, raw = await send(env, head(env, f"/public/{marker}", method, extra))
    assert status == 400, raw[:300]
    assert parsed["error"]["code"] == "upgrade-refused"
    assert not requests_with(env, marker)


async def test_websocket_to_protected_path_needs_the_same_decision(world: World) -> None:
    """WebSocket upgrade bypass (Pomerium and oauth2-proxy advisories on upgrade requests
    skipping authorization): a viewer's upgrade to a denied path is refused before 101."""
    env = world.env
    marker = uuid.uuid4().hex
    # The tenant's policy denies viewers everything under /secret/.
    extra = cookie_line(env, world.viewer.session) + (
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    )
    for target in (f"/secret/{marker}", f"/public/../secret/{marker}", f"/%73ecret/{marker}"):
        status, _, _ = await send(env, head(env, target, extra=extra))
        assert status == 403, target
    anonymous = extra.split("\r\n", 1)[1]
    status, _, _ = await send(env, head(env, f"/app/{marker}", extra=anonymous))
    assert status == 401
    assert not requests_with(env, marker)


# ---------------------------------------------------------------------------------------
# Tenant confusion
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "how",
    ["header", "prefix", "header-twice", "header-and-prefix", "prefix-encoded", "header-case"],
)
async def test_a_session_cannot_act_in_another_tenant(world: World, how: str) -> None:
    """Tenant confusion (Pomerium/Authelia multi-domain advisories class): Alice's session
    naming Mallory's tenant, alone or together with her own, in any spelling."""
    env = world.env
    own, other = world.alice.tenant_slug, world.mallory.tenant_slug
    marker = uuid.uuid4().hex
    auth = cookie_line(env, world.alice.session)
    path, extra = {
        "header": (f"/app/{marker}", f"X-Tenant: {other}\r\n"),
        "prefix": (f"/t/{other}/app/{marker}", ""),
        "header-twice": (f"/app/{marker}", f"X-Tenant: {own}\r\nX-Tenant: {other}\r\n"),
        "header-and-prefix": (f"/t/{other}/app/{marker}", f"X-Tenant: {own}\r\n"),
        "prefix-encoded": (f"/t/%{ord(other[0]):02x}{other[1:]}/app/{marker}", ""),
        "header-case": (f"/app/{marker}", f"x_tenant: {other.upper()}\r\n"),
    }[how]
    status, _, raw = await send(env, head(env, path, extra=auth + extra))
    for record in requests_with(env, marker):
        # Reaching the upstream is only acceptable as Alice in her own tenant.
        assert seen_headers(record)["x-tenant-slug"] == own, how
    assert status in (200, 400, 403, 404), raw[:300]
    if how != "header-case":
        assert status != 200, how


async def test_another_tenants_session_cookie_cannot_be_combined(world: World) -> None:
    """Two session cookies (cookie tossing from a sibling subdomain, the Pomerium/oauth2-proxy
    class): the ambiguous request is not authenticated as either user."""
    env = world.env
    marker = uuid.uuid4().hex
    extra = (
        f"Cookie: {env.cookie_name}={world.alice.session}; "
        f"{env.cookie_name}={world.mallory.session}\r\n"
    )
    status, _, _ = await send(env, head(env, f"/app/{marker}", extra=extra))
    assert status == 401
    assert not requests_with(env, marker)


# ---------------------------------------------------------------------------------------
# Session fixation and CSRF variants
# ---------------------------------------------------------------------------------------


async def test_hosted_login_never_adopts_a_planted_valid_session(world: World) -> None:
    """Session fixation with a *valid* attacker session planted in the victim's browser
    (oauth2-proxy and Authelia fixation advisories class): the victim's login issues a new
    token and the planted one is revoked, so the attacker does not ride the victim's login."""
    env = world.env
    async with http_client() as http:
        planted = (await signup(env, http)).session
        email = world.viewer.email
        async with http.post(
            f"{env.url}/.gateway/login",
            data={"email": email, "password": world.viewer.password, "rd": "/app"},
            headers={**env.cookie(planted), "Origin": env.origin},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
            issued = set_cookie_value(resp, env.cookie_name)
        assert issued and issued != planted
        async with http.get(f"{env.url}/.gateway/auth/session", headers=env.cookie(planted)) as r:
            assert r.status == 401


@pytest.mark.parametrize(
    "extra",
    [
        # Origin compared as a prefix or substring (oauth2-proxy/Pomerium CSRF and redirect
        # checks that used HasPrefix): http://127.0.0.1:PORT.evil.example
        "Origin: {origin}.evil.example\r\n",
        "Origin: {origin}@evil.example\r\n",
        # Referer on another port or scheme is another origin.
        "Referer: http://127.0.0.1:1/{path}\r\n",
        # A text/plain "simple" request that a form can send cross-site.
        "Content-Type: text/plain\r\nOrigin: null\r\n",
    ],
    ids=["origin-suffix", "origin-userinfo", "referer-other-port", "origin-null-text-plain"],
)
async def test_csrf_lookalike_origins_are_refused(world: World, extra: str) -> None:
    env = world.env
    marker = uuid.uuid4().hex
    auth = cookie_line(env, world.alice.session)
    line = extra.format(origin=env.origin, path=marker)
    data = head(env, f"/app/{marker}", "POST", auth + line + "Content-Length: 0\r\n")
    status, parsed, _ = await send(env, data)
    assert status == 403
    assert parsed["error"]["code"] == "csrf"
    assert not requests_with(env, marker)


# ---------------------------------------------------------------------------------------
# Rate-limit bypass
# ---------------------------------------------------------------------------------------

BYPASS_HEADERS = [
    "X-Forwarded-For",
    "Forwarded",
    "X-Real-IP",
    "True-Client-IP",
    "CF-Connecting-IP",
    "X-Client-IP",
    "X-Originating-IP",
    "Client-IP",
]


@pytest.mark.parametrize("index", range(len(BYPASS_HEADERS)), ids=BYPASS_HEADERS)
async def test_spoofed_client_ip_headers_do_not_reset_the_budget(world: World, index: int) -> None:
    """Rotating a client-IP header per request from an untrusted peer (the classic
    X-Forwarded-For rate-limit bypass; Traefik/Caddy trusted-proxy fixes)."""
    env = world.env
    name = BYPASS_HEADERS[index]
    statuses = []
    for i in range(4):
        value = f"for=10.9.{index}.{i}" if name == "Forwarded" else f"10.9.{index}.{i}"
        status, _, _ = await send(
            env, head(env, f"{RATE_PATHS[index]}/x", extra=f"{name}: {value}\r\n")
        )
        statuses.append(status)
    assert statuses == [200, 200, 429, 429]


@pytest.mark.parametrize(
    "variants",
    [
        ["{p}/x", "{p}//x", "{p}/./x", "{p}/y/../x"],
        ["{p}/x", "{p}/%78", "/%70ublic/{q}/x", "{p}/x?cache=buster"],
    ],
    ids=["dot-and-slash", "encoded-and-query"],
)
async def test_path_spellings_share_one_budget(world: World, variants: list[str]) -> None:
    """Path variants that reach the same resource must not get separate budgets (the
    normalization-mismatch class behind Envoy CVE-2019-9901)."""
    env = world.env
    index = len(BYPASS_HEADERS) + (0 if variants[1].endswith("//x") else 1)
    prefix = RATE_PATHS[index]
    statuses = []
    for variant in variants:
        target = variant.format(p=prefix, q=prefix.rsplit("/", 1)[1])
        status, _, _ = await send(env, head(env, target))
        statuses.append(status)
    assert statuses == [200, 200, 429, 429]


# ---------------------------------------------------------------------------------------
# User enumeration
# ---------------------------------------------------------------------------------------


async def _form_login(http: aiohttp.ClientSession, env: AuthEnv, email: str) -> tuple[int, str]:
    async with http.post(
        f"{env.url}/.gateway/login",
        data={"email": email, "password": "wrong-password-123", "rd": "/"},
        headers={"Origin": env.origin},
        allow_redirects=False,
    ) as resp:
        return resp.status, await resp.text()


async def test_hosted_login_failure_page_is_identical_for_unknown_emails(world: World) -> None:
    """Authelia and Ory (Kratos) enumeration advisories class: the HTML form must not differ
    between an existing account with a wrong password and an unknown email."""
    env = world.env
    async with http_client() as http:
        known = await _form_login(http, env, world.viewer.email)
        unknown = await _form_login(http, env, f"nobody-{uuid.uuid4().hex}@example.test")
    assert known[0] == unknown[0] == 401
    assert _strip_email(known[1]) == _strip_email(unknown[1])


def _strip_email(page: str) -> str:
    """The page without the echoed email field value (it is the user's own input)."""
    return re.sub(r'value="[^"]*@[^"]*"', 'value="E"', page)


async def test_password_reset_request_does_not_reveal_accounts(world: World) -> None:
    """Reset-request enumeration (the class of Authelia/Kratos "reset reveals account"
    reports): same status and body for a known and an unknown email."""
    env = world.env
    answers = []
    async with http_client() as http:
        for email in (world.viewer.email, f"nobody-{uuid.uuid4().hex}@example.test"):
            async with http.post(
                f"{env.url}/.gateway/auth/password/reset/request",
                data=json.dumps({"email": email}),
                headers={"Content-Type": "application/json", "Origin": env.origin},
            ) as resp:
                answers.append((resp.status, await resp.read()))
    assert answers[0] == answers[1]


# ---------------------------------------------------------------------------------------
# Oversize heads and bodies, and errors that leak
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        "X-Big: " + "a" * 9000 + "\r\n",
        "".join(f"X-Many-{i}: v\r\n" for i in range(150)),
        "Cookie: " + "; ".join(f"c{i}=" + "v" * 60 for i in range(200)) + "\r\n",
    ],
    ids=["one-long-value", "too-many-fields", "cookie-bomb"],
)
async def test_oversize_heads_are_431_without_echo(world: World, extra: str) -> None:
    """Header bombs (Envoy CVE-2019-9900 class of header handling; oauth2-proxy cookie-size
    DoS reports): 431 JSON, no upstream call, no echo of the bytes."""
    env = world.env
    marker = uuid.uuid4().hex
    status, parsed, raw = await send(env, head(env, f"/public/{marker}", extra=extra))
    assert status == 431
    assert parsed["error"]["code"] == "headers-too-large"
    assert b"vvvvvvvv" not in raw and b"aaaaaaaa" not in raw
    assert not requests_with(env, marker)


async def test_declared_oversize_body_is_413_before_reading(world: World) -> None:
    """A Content-Length beyond the route limit is refused from the head alone (no buffering:
    the aiohttp/Caddy request-body DoS class)."""
    env = world.env
    marker = uuid.uuid4().hex
    data = head(env, f"/public/{marker}", "POST", f"Content-Length: {10**12}\r\n")
    status, _, _ = await send(env, data)
    assert status == 413
    assert not requests_with(env, marker)


@pytest.mark.parametrize(
    ("path", "extra", "body"),
    [
        ("/.gateway/auth/signin", "Content-Type: application/json\r\n", '{"email": ['),
        ("/.gateway/auth/signin", "Content-Type: application/json\r\n", '"\\ud800"'),
        ("/.gateway/auth/signup", "Content-Type: application/json\r\n", "[" * 5000),
        ("/.gateway/auth/signin", "Content-Type: application/json; charset=utf-7\r\n", "{}"),
        (
            "/.gateway/login",
            "Content-Type: application/x-www-form-urlencoded\r\n",
            "email=%ff%fe&rd=%00",
        ),
        (
            "/.gateway/secrets/resolve",
            "X-Gateway-Assertion: a.b.c\r\nContent-Type: application/json\r\n",
            "{}",
        ),
        ("/.gateway/admin/v1/tenants/%00/policy", "", ""),
    ],
    ids=[
        "truncated-json",
        "lone-surrogate",
        "deep-nesting",
        "utf7",
        "bad-form",
        "junk-jwt",
        "nul-in-admin-path",
    ],
)
async def test_internal_errors_never_leak_traces_or_secrets(
    world: World, path: str, extra: str, body: str
) -> None:
    """Stack traces and config secrets in error pages (aiohttp's default error page echoing
    request bytes; Authelia/Ory error-detail disclosures): bodies are the contract's JSON."""
    env = world.env
    extra = f"Origin: {env.origin}\r\n{extra}Content-Length: {len(body.encode())}\r\n"
    status, _, raw = await send(env, head(env, path, "POST", extra, body))
    assert status < 500 or status == 503, raw[:400]
    assert_no_leak(raw, world.alice.session, world.alice.password)
    _, headers, resp_body = parse_response(raw)
    if resp_body:
        content_type = dict((k.lower(), v) for k, v in headers).get("content-type", "")
        if "json" in content_type:
            assert set(json.loads(resp_body)) <= {"error", "errors"}
