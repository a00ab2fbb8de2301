"""Differential check of path normalization against a maximally lenient upstream.

Hundreds of request targets are composed from tricky pieces (dot segments in every encoding,
encoded and raw separators, `;` parameters, double encoding, overlong UTF-8, letter case).
An editor POSTs each to the real gateway, whose default policy denies editors' writes under
`/admin`. Whenever the gateway forwards a request, the path the echo upstream received is
resolved the way the most lenient upstream would (decode repeatedly, `\\` as `/`, strip
`;params`, NFKC, resolve dot segments): it must never land under `/admin`.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import unicodedata
from collections.abc import AsyncIterator
from urllib.parse import unquote

import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import Account, AuthEnv, http_client, signup, unique
from tests.e2e.test_authorization import gateway_env, invite_member
from tests.support.net import parse_response, raw_request

pytestmark = [pytest.mark.e2e]

PIECES = (
    "admin",
    "%61dmin",
    "adm%69n",
    "x",
    "..",
    ".",
    "",
    "%2e%2e",
    "%2E.",
    ".%2e",
    "%2e",
    "%252e%252e",
    "%c0%ae%c0%ae",
    "admin%2f",
    "%2fadmin",
    "admin%5c",
    "admin\\",
    "..\\",
    "admin;x",
    "..;",
    "%3b",
    "admin%00",
    "%ef%bc%8e%ef%bc%8e",
)
SAMPLE_LENGTH_3 = 250


def targets() -> list[str]:
    combos = [c for n in (1, 2) for c in itertools.product(PIECES, repeat=n)]
    rng = random.Random(20240611)
    combos += [tuple(rng.choice(PIECES) for _ in range(3)) for _ in range(SAMPLE_LENGTH_3)]
    found = dict.fromkeys("/" + "/".join(combo) + "/x" for combo in combos)
    return list(found)


def lenient_resolve(path: str) -> str:
    """What the most permissive upstream could make of `path`."""
    for _ in range(3):
        path = unquote(path, errors="replace")
    path = unicodedata.normalize("NFKC", path).replace("\\", "/").replace("\x00", "")
    segments: list[str] = []
    for segment in path.split("/"):
        segment = segment.split(";", 1)[0]
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


def under_admin(path: str) -> bool:
    return re.match(r"/admin(/|$)", path) is not None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def editor(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[AuthEnv, Account]]:
    async with gateway_env(tmp_path_factory.mktemp("bypass")) as env:
        async with http_client() as http:
            admin = await signup(env, http, tenant=unique("tx"))
            member = await invite_member(env, http, admin, "editor")
        yield env, member


def test_lenient_resolver_sanity() -> None:
    assert under_admin(lenient_resolve("/x/%252e%252e/admin/x"))
    assert under_admin(lenient_resolve("/admin;x/x"))
    assert under_admin(lenient_resolve("/x/..\\admin/x"))
    assert not under_admin(lenient_resolve("/administrator"))
    assert len(targets()) > 500


@pytest.mark.asyncio(loop_scope="module")
async def test_no_forwarded_path_resolves_under_admin(editor: tuple[AuthEnv, Account]) -> None:
    env, member = editor
    bypasses: list[tuple[str, str]] = []
    unexpected: list[tuple[str, int]] = []
    for target in targets():
        head = (
            f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{env.gw.port}\r\n"
            f"Cookie: {env.cookie_name}={member.session}\r\nOrigin: {env.origin}\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        status, _, body = parse_response(await raw_request(env.gw.host, env.gw.port, head.encode()))
        if status == 200:
            received = json.loads(body)["path"]
            if under_admin(lenient_resolve(received)):
                bypasses.append((target, received))
        elif status not in (400, 403):
            unexpected.append((target, status))
    assert not bypasses, f"forwarded paths a lenient upstream resolves under /admin: {bypasses}"
    assert not unexpected, f"neither forwarded nor refused/denied: {unexpected}"
    for record in env.upstream.requests:
        assert not under_admin(lenient_resolve(record["path"])), record["path"]
