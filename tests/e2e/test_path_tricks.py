"""Path tricks against the policy, sent as raw bytes so no client normalizes them first.

An editor may not write under `/admin` (default policy) and, by a tenant rule, viewers may
not touch `/secret` at all. Every request target below tries to reach one of those prefixes
in another spelling. Each must be refused (400) or denied (403) by the gateway itself: never
a 2xx, and the echo upstream never receives any of them.

Decision on letter case: paths are case-sensitive (RFC 3986 section 6.2.2.1 makes only the
scheme and host case-insensitive), and the contract promises that the upstream receives
exactly the path the policy saw. So `/ADMIN/x` is a different resource from `/admin/x`: the
gateway decides on `/ADMIN/x` and forwards exactly `/ADMIN/x`, never a case-folded path.
An upstream that folds case must be protected by rules written for that (documented in
test_uppercase_is_another_path_and_reaches_upstream_verbatim).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import unquote

import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import Account, AuthEnv, http_client, signup, unique
from tests.e2e.test_authorization import admin_call, gateway_env, invite_member
from tests.support.net import parse_response, raw_request

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

REFUSED = (400, 403)
PARSER_CODES = ("bad-request", "bad-framing")


def tricks(word: str) -> list[bytes]:
    """Request targets that try to reach `/{word}/x` (or `/{word}`) in another spelling."""
    w = word
    first = f"%{ord(w[0]):02x}"
    fw = "".join(chr(0xFF00 + ord(c) - 0x20) for c in w)  # fullwidth letters
    targets = [
        f"/{w}/../{w}/x",
        f"/x/../{w}/x",
        f"/x/y/../../{w}/x",
        f"//{w}/x",
        f"///{w}//x",
        f"/{first}{w[1:]}/x",
        f"/{first.upper()}{w[1:]}/x",
        f"/{w[:-1]}%{ord(w[-1]):02X}/x",
        f"/{w}%2fx",
        f"/{w}%2Fx",
        f"/%2f{w}/x",
        f"/x%2f..%2f{w}/x",
        f"/{w}%5cx",
        f"/{w}%5Cx",
        f"/{w}\\x",
        f"/{w}\\..\\x",
        f"/x\\..\\{w}/x",
        f"/{w};x",
        f"/{w};/x",
        f"/{w}/x;jsessionid=1",
        f"/{w}%3bx",
        f"/{w}/%2e%2e/{w}/x",
        f"/{w}/%2E%2E/{w}/x",
        f"/x/.%2e/{w}/x",
        f"/x/%2e./{w}/x",
        f"/%2e%2e/{w}/x",
        f"/../{w}/x",
        f"/./{w}/x",
        f"/%2e/{w}/x",
        f"/{w}/./x",
        f"/{w}//x",
        f"/{w}/x/..",
        f"/{w}/x/../",
        f"/{w}%00/x",
        f"/{w}/x%00",
        f"/{w}%00",
        f"/{w}%09/x",
        f"/{w}%0d/x",
        f"/{w}%252fx",
        f"/%25{ord(w[0]):02x}{w[1:]}/x",
        f"/{w}%255cx",
        f"/{w}/x%20",
        f"/{w}/x?",
        f"/{w}/x?a=../../x",
        f"/{w}/x#",
        f"/{w}/x#frag",
        f"/{w}/x/..;/",
        f"/{w}/..;/{w}/x",
        f"/%c0%ae%c0%ae/{w}/x",
        f"/x/%c0%ae%c0%ae/{w}/x",
        f"/{w}%c0%afx",
        f"/{w}%ef%bc%8fx",
        f"/x/%ef%bc%8e%ef%bc%8e/{w}/x",
        f"/%ef%bc%85{ord(w[0]):02x}{w[1:]}/x",
        f"/\uff05{ord(w[0]):02x}{w[1:]}",
        f"/{fw}/x",
        f"/{w}",
        f"/{w}/",
        f"/{w}/" + "a/" * 1000 + "x",
        f"/{w}/" + "./" * 1000 + "x",
        "/x/" + "../" * 3 + f"{w}/x",
    ]
    return [t.encode("utf-8") for t in targets]


def _head(method: str, target: bytes, env: AuthEnv, session: str, extra: bytes = b"") -> bytes:
    return (
        method.encode()
        + b" "
        + target
        + b" HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{env.gw.port}\r\n".encode()
        + f"Cookie: {env.cookie_name}={session}\r\n".encode()
        + f"Origin: {env.origin}\r\n".encode()
        + extra
        + b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )


async def send(env: AuthEnv, data: bytes) -> tuple[int, bytes]:
    resp = await raw_request(env.gw.host, env.gw.port, data)
    assert resp, "the gateway closed the connection without answering"
    status, _, body = parse_response(resp)
    return status, body


@dataclass
class Setup:
    env: AuthEnv
    admin: Account
    editor: Account
    viewer: Account


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def setup(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Setup]:
    async with gateway_env(tmp_path_factory.mktemp("path-tricks")) as env:
        async with http_client() as http:
            admin = await signup(env, http, tenant=unique("tp"))
            editor = await invite_member(env, http, admin, "editor")
            viewer = await invite_member(env, http, admin, "viewer")
            deny = {"sub": "viewer", "obj": "/secret/*", "act": "*", "eft": "deny"}
            status, body = await admin_call(
                env,
                http,
                "PUT",
                f"/tenants/{admin.tenant_slug}/policy",
                admin.session,
                {"rules": [deny]},
            )
            assert status == 200, body
        yield Setup(env, admin, editor, viewer)


def _reached(setup: Setup, word: str) -> list[str]:
    """Recorded upstream paths that, decoded any number of times, reach `/{word}`."""
    hits = []
    for record in setup.env.upstream.requests:
        path = record["path"]
        decoded = path
        for _ in range(3):
            decoded = unquote(decoded)
        folded = decoded.replace("\\", "/").replace("\uff0f", "/")
        if f"/{word}" in folded or f"/{word}" in path:
            hits.append(path)
    return hits


@pytest.mark.parametrize(
    ("word", "role", "method"),
    [("admin", "editor", "POST"), ("admin", "editor", "DELETE"), ("secret", "viewer", "GET")],
)
async def test_path_tricks_are_refused_or_denied(
    setup: Setup, word: str, role: str, method: str
) -> None:
    member: Account = getattr(setup, role)
    before = len(setup.env.upstream.requests)
    outcomes: dict[bytes, int] = {}
    for target in tricks(word):
        status, body = await send(setup.env, _head(method, target, setup.env, member.session))
        outcomes[target] = status
        if status in REFUSED:
            # 400 comes from the normalizer (bad-path) or, for bytes that are not a valid
            # request target at all, from the HTTP parser (bad-request / bad-framing).
            code = json.loads(body)["error"]["code"]
            expected = {"policy-deny"} if status == 403 else {"bad-path", *PARSER_CODES}
            assert code in expected, (target, body)
    wrong = {t: s for t, s in outcomes.items() if s not in REFUSED}
    assert not wrong, f"reached the upstream or failed otherwise: {wrong}"
    assert len(tricks(word)) >= 30
    assert setup.env.upstream.requests[before:] == [], "a trick reached the upstream"
    assert _reached(setup, word) == []


@pytest.mark.parametrize(
    "target",
    [b"/admin%0a/x", b"/admin%0A/x", b"/admin%0d%0a/x", b"/admin/x%0a", b"/x%0a/../admin/x"],
)
async def test_encoded_line_feed_is_refused_as_bad_path(setup: Setup, target: bytes) -> None:
    """Contract: control characters, raw or encoded, are refused with 400 before any decision."""
    before = len(setup.env.upstream.requests)
    status, body = await send(setup.env, _head("POST", target, setup.env, setup.editor.session))
    assert status == 400, (status, body)
    assert json.loads(body)["error"]["code"] == "bad-path", body
    assert setup.env.upstream.requests[before:] == []


@pytest.mark.parametrize("word", ["admin", "secret"])
async def test_absolute_form_target(setup: Setup, word: str) -> None:
    before = len(setup.env.upstream.requests)
    for host in (f"127.0.0.1:{setup.env.gw.port}", "evil.example"):
        for target in (f"http://{host}/{word}/x", f"http://{host}/x/../{word}/x"):
            member = setup.editor if word == "admin" else setup.viewer
            method = "POST" if word == "admin" else "GET"
            status, _ = await send(
                setup.env, _head(method, target.encode(), setup.env, member.session)
            )
            assert status in REFUSED, (target, status)
    assert setup.env.upstream.requests[before:] == []


@pytest.mark.parametrize(
    "raw_target",
    [
        b"/admin\t/x",
        b"/admin/x\t",
        b"/admin\r/x",
        b"/admin/\x00x",
        b"/admin\x0b/x",
        b"/admin /x",
        b"/admin/x HTTP/1.1\r\nX-Smuggle: 1",
        b"/" + b"admin/" * 3000 + b"x",
        b"/admin/" + b"a" * 20000,
    ],
)
async def test_control_characters_and_huge_targets(setup: Setup, raw_target: bytes) -> None:
    before = len(setup.env.upstream.requests)
    resp = await raw_request(
        setup.env.gw.host,
        setup.env.gw.port,
        _head("POST", raw_target, setup.env, setup.editor.session),
    )
    if resp:
        status, _, _ = parse_response(resp)
        assert status in (*REFUSED, 414, 431), status
    assert setup.env.upstream.requests[before:] == []


async def test_method_override_and_odd_methods_cannot_launder_a_write(setup: Setup) -> None:
    env, editor = setup.env, setup.editor
    before = len(env.upstream.requests)
    overrides = (
        b"X-HTTP-Method-Override: GET\r\nX-HTTP-Method: GET\r\nX-Method-Override: GET\r\n"
        b"X-Original-URL: /x\r\nX-Rewrite-URL: /x\r\n"
    )
    status, _ = await send(env, _head("POST", b"/admin/x", env, editor.session, overrides))
    assert status == 403
    for method in ("post", "Post", "PATCH", "PUT", "DELETE"):
        status, _ = await send(env, _head(method, b"/admin/x", env, editor.session))
        assert status in REFUSED, (method, status)
    assert env.upstream.requests[before:] == []


async def test_uppercase_is_another_path_and_reaches_upstream_verbatim(setup: Setup) -> None:
    """Case is significant: `/ADMIN/x` is not `/admin/x`; the upstream gets exactly it."""
    env = setup.env
    before = len(env.upstream.requests)
    for target in (b"/ADMIN/x", b"/Admin/x"):
        status, body = await send(env, _head("POST", target, env, setup.editor.session))
        assert status == 200, (target, body)
        assert json.loads(body)["path"] == target.decode()
    assert [r["path"] for r in env.upstream.requests[before:]] == ["/ADMIN/x", "/Admin/x"]
    # A policy author who must cover both spellings writes both rules; the admin can do so.
    async with http_client() as http:
        rules = [
            {"sub": "viewer", "obj": "/secret/*", "act": "*", "eft": "deny"},
            {"sub": "editor", "obj": "/ADMIN/*", "act": "POST", "eft": "deny"},
        ]
        path = f"/tenants/{setup.admin.tenant_slug}/policy"
        status, body = await admin_call(
            env, http, "PUT", path, setup.admin.session, {"rules": rules}
        )
        assert status == 200, body
        try:
            status, _ = await send(env, _head("POST", b"/ADMIN/x", env, setup.editor.session))
            assert status == 403
            status, _ = await send(env, _head("POST", b"/%41DMIN/x", env, setup.editor.session))
            assert status == 403
        finally:
            status, body = await admin_call(
                env, http, "PUT", path, setup.admin.session, {"rules": rules[:1]}
            )
            assert status == 200, body


@pytest.mark.parametrize(
    ("target", "forwarded"),
    [
        (b"/x/../y", "/y"),
        (b"/x/./y", "/x/y"),
        (b"//x//y", "/x/y"),
        (b"/%78/y", "/x/y"),
        (b"/x/%2e%2e/y", "/y"),
        (b"/adm%69nistrator", "/administrator"),
        (b"/a%7cb", "/a%7Cb"),
    ],
)
async def test_accepted_paths_reach_upstream_exactly_as_decided(
    setup: Setup, target: bytes, forwarded: str
) -> None:
    """What the policy saw is what the upstream receives (editors may write outside /admin)."""
    status, body = await send(setup.env, _head("POST", target, setup.env, setup.editor.session))
    assert status == 200, (target, body)
    assert json.loads(body)["path"] == forwarded


def _admin_api_tricks(slug: str) -> list[bytes]:
    base = "/.gateway/admin/v1/tenants"
    first = f"%{ord(slug[0]):02x}"
    targets = [
        f"{base}/{slug}/",
        f"{base}//{slug}",
        f"/.gateway/admin/v1//tenants/{slug}",
        f"/.gateway//admin/v1/tenants/{slug}",
        f"{base}/{first}{slug[1:]}",
        f"{base}/x/../{slug}",
        f"{base}/./{slug}",
        f"/.gateway/admin/v1/x/../tenants/{slug}",
        f"/.gateway/admin/v1/%74enants/{slug}",
        f"/%2egateway/admin/v1/tenants/{slug}",
        f"{base}/{slug}%2f",
        f"{base}/{slug}%2F..",
        f"{base}/{slug};x",
        f"{base}/{slug}%3b",
        f"{base}/{slug}%00",
        f"{base}/{slug}%20",
        f"{base}/{slug}/.",
        f"{base}/{slug}/x/..",
        f"{base}/{slug}?x=/policy",
        f"{base}/{slug}#x",
        f"{base}/{slug.upper()}",
    ]
    return [t.encode() for t in targets]


async def test_tenant_admin_cannot_patch_own_settings_through_path_tricks(setup: Setup) -> None:
    """The deny on PATCH /tenants/:t for tenant admins holds for every spelling of the path."""
    env, admin = setup.env, setup.admin
    body = json.dumps({"features": ["pwned"], "upstream": "app"}).encode()
    accepted = []
    for target in _admin_api_tricks(admin.tenant_slug):
        data = (
            b"PATCH "
            + target
            + b" HTTP/1.1\r\n"
            + f"Host: 127.0.0.1:{env.gw.port}\r\n".encode()
            + f"Cookie: {env.cookie_name}={admin.session}\r\n".encode()
            + f"Origin: {env.origin}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        status, answer = await send(env, data)
        if 200 <= status < 300:
            accepted.append((target, status, answer))
        assert status in (400, 403, 404, 405), (target, status, answer)
    assert not accepted
    async with http_client() as http:
        status, settings = await admin_call(
            env, http, "GET", f"/tenants/{admin.tenant_slug}", admin.session
        )
    assert status == 200, settings
    assert settings["features"] == [] and settings["upstream"] is None, settings
