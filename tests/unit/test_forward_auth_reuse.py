"""How long a proxy may reuse a forward-auth answer (`decision_lifetime`, `mark_reuse`): only
what cannot come out differently within that time, and never past a credential's end."""

from __future__ import annotations

import dataclasses

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.identity.models import Tenant
from gateway.identity.principal import Principal
from gateway.pipeline.scope import RequestScope
from gateway.sessions.models import SessionRecord
from gateway.web.forward_auth import CACHE_LIFETIME_HEADER, decision_lifetime, mark_reuse

NOW = 1_700_000_000.0
TENANT = Tenant("t_1", "acme", 0.0)
SESSION = SessionRecord(
    id="s_1", token_hash="h", user_id="u_1", tenant_id="t_1", created_at=NOW - 100,
    last_seen_at=NOW, expires_at=NOW + 3600, idle_timeout=1800,
)  # fmt: skip
BY_SESSION = Principal("user", "u_1", "a@x", TENANT, ("viewer",), "session", session=SESSION)
BY_KEY = Principal("service_account", "sa_1", None, TENANT, ("viewer",), "api_key", key_id="k_1")
BY_JWT = Principal("user", "u_2", "b@x", TENANT, ("viewer",), "jwt")


def scope(method: str = "GET", principal: Principal | None = BY_SESSION) -> RequestScope:
    found = RequestScope(make_mocked_request("GET", "/.gateway/verify"), "req-1", 0.0)
    found.method = method
    found.principal = principal
    return found


def test_a_session_answer_is_reusable_up_to_the_configured_limit() -> None:
    assert decision_lifetime(scope(), 5, NOW) == 5
    assert decision_lifetime(scope("HEAD"), 30, NOW) == 30


def test_nothing_is_reusable_when_caching_is_off() -> None:
    assert decision_lifetime(scope(), 0, NOW) == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_only_get_and_head_answers_are_reusable(method: str) -> None:
    assert decision_lifetime(scope(method), 5, NOW) == 0


@pytest.mark.parametrize(
    "header",
    [("Set-Cookie", "gw_session=new"), ("RateLimit-Policy", '"api";q=10;w=1')],
)
def test_an_answer_carrying_anything_for_this_request_alone_is_not_reusable(
    header: tuple[str, str],
) -> None:
    found = scope()
    found.response_headers.append(header)
    assert decision_lifetime(found, 5, NOW) == 0


def test_a_session_answer_never_outlives_the_session() -> None:
    idle_soon = dataclasses.replace(SESSION, last_seen_at=NOW - 1800 + 3.5)
    ending = dataclasses.replace(SESSION, expires_at=NOW + 2.9)
    gone = dataclasses.replace(SESSION, expires_at=NOW + 0.5)
    for record, expected in ((idle_soon, 3), (ending, 2), (gone, 0)):
        principal = dataclasses.replace(BY_SESSION, session=record)
        assert decision_lifetime(scope(principal=principal), 30, NOW) == expected


def test_api_keys_are_held_to_a_second_and_unknown_credential_ends_to_none() -> None:
    assert decision_lifetime(scope(principal=BY_KEY), 30, NOW) == 1
    assert decision_lifetime(scope(principal=BY_JWT), 30, NOW) == 0


def test_a_public_answer_depends_on_no_credential() -> None:
    assert decision_lifetime(scope(principal=None), 7, NOW) == 7


def test_the_mark_nginx_obeys() -> None:
    reusable, not_reusable, off = web.Response(), web.Response(), web.Response()
    mark_reuse(reusable, 5)
    mark_reuse(not_reusable, 0)
    mark_reuse(off, None)
    assert reusable.headers[CACHE_LIFETIME_HEADER] == "5"
    assert "Cache-Control" not in reusable.headers  # nginx would not keep a no-store answer
    assert not_reusable.headers[CACHE_LIFETIME_HEADER] == "0"
    assert not_reusable.headers["Cache-Control"] == "no-store"
    assert CACHE_LIFETIME_HEADER not in off.headers
    assert off.headers["Cache-Control"] == "no-store"


async def test_a_refusal_is_marked_not_reusable_when_caching_is_on() -> None:
    from gateway.pipeline.entry import ScopeFactory
    from gateway.proxy.clientip import TrustedProxies
    from gateway.web.forward_auth import make_verify_handler

    nobody = TrustedProxies(())  # the asking peer is not trusted: refused before any stage
    factory = ScopeFactory(nobody, "X-Request-Id")
    request = make_mocked_request("GET", "/.gateway/verify", headers={"X-Original-URI": "/x"})
    for seconds, mark in ((5, "0"), (0, None)):
        verify = make_verify_handler(factory, (), nobody, {}, seconds)
        refusal = await verify(request)
        assert refusal.status == 403
        assert refusal.headers.get(CACHE_LIFETIME_HEADER) == mark
