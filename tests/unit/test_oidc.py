"""OIDC sign-in per tenant, against the loopback provider, with the gateway app in process."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from yarl import URL

from gateway.audit.events import RequestContext
from gateway.web.common import AUTH_SERVICES
from tests.support.fake_oidc import (
    FakeOidc,
    forged_token,
    in_process_gateway,
    new_rsa_key,
    provider_config,
    run_fake_oidc,
)

Client = TestClient[web.Request, web.Application]
PASSWORD = "plum-tractor-nebula-42"
FLOW = "gw_oidc"
SESSION = "gw_session"


@dataclass
class Env:
    idp: FakeOidc
    gw: Client
    http: aiohttp.ClientSession

    async def signup(self, email: str, tenant: str = "acme") -> str:
        identity = self.gw.app[AUTH_SERVICES].identity
        result = await identity.signup(email, PASSWORD, tenant, RequestContext())
        return result.user.id

    async def start(self, rd: str = "/dash", tenant: str = "acme") -> tuple[str, str]:
        """(flow cookie, provider authorize URL)."""
        resp = await self.gw.get(
            f"/.gateway/oidc/{tenant}/start", params={"rd": rd}, allow_redirects=False
        )
        assert resp.status == 302, await resp.text()
        return resp.cookies[FLOW].value, resp.headers["Location"]

    async def authorize(self, url: str) -> URL:
        """The callback URL the provider sends the browser back to."""
        async with self.http.get(url, allow_redirects=False) as resp:
            assert resp.status == 302, await resp.text()
            return URL(resp.headers["Location"])

    async def callback(
        self, callback: URL, flow: str | None, extra_cookie: str = ""
    ) -> aiohttp.ClientResponse:
        cookie = "; ".join(c for c in (f"{FLOW}={flow}" if flow else "", extra_cookie) if c)
        headers = {"Cookie": cookie} if cookie else {}
        return await self.gw.get(callback.path_qs, headers=headers, allow_redirects=False)

    async def login(self, rd: str = "/dash", tenant: str = "acme") -> aiohttp.ClientResponse:
        flow, url = await self.start(rd, tenant)
        return await self.callback(await self.authorize(url), flow)

    async def session(self, token: str) -> dict[str, Any]:
        resp = await self.gw.get("/.gateway/auth/session", headers={"Cookie": f"{SESSION}={token}"})
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


@contextlib.asynccontextmanager
async def oidc_env(tmp_path: Path, **provider: Any) -> AsyncIterator[Env]:
    async with run_fake_oidc() as idp:
        oidc = {"providers": [provider_config(idp, **provider)]}
        async with in_process_gateway(tmp_path, oidc=oidc) as gw, aiohttp.ClientSession() as http:
            env = Env(idp, gw, http)
            idp.user = {"email": "alice@acme.test", "email_verified": True}
            yield env


def session_cookie(resp: aiohttp.ClientResponse) -> str | None:
    morsel = resp.cookies.get(SESSION)
    return morsel.value if morsel is not None and morsel.value else None


def flow_cleared(resp: aiohttp.ClientResponse) -> bool:
    morsel = resp.cookies.get(FLOW)
    return morsel is not None and morsel.value == "" and morsel["max-age"] == "0"


async def test_happy_path_signs_a_verified_member_in(tmp_path: Path) -> None:
    async with oidc_env(tmp_path) as env:
        user_id = await env.signup("alice@acme.test")
        flow, url = await env.start("/dash?x=1")
        query = URL(url).query
        assert query["code_challenge_method"] == "S256" and query["nonce"] and query["state"]
        assert "code_verifier" not in query and flow not in url
        resp = await env.callback(await env.authorize(url), flow)
        assert resp.status == 303 and resp.headers["Location"] == "/dash?x=1"
        assert flow_cleared(resp)
        token = session_cookie(resp)
        assert token is not None
        body = await env.session(token)
        assert body["session"]["auth_method"] == "oidc"
        assert body["user"]["id"] == user_id and body["roles"] == ["admin"]


async def test_es256_id_tokens_are_accepted(tmp_path: Path) -> None:
    async with oidc_env(tmp_path) as env:
        await env.signup("alice@acme.test")
        env.idp.alg = "ES256"
        assert (await env.login()).status == 303


@pytest.mark.parametrize("rd", ["//evil.example", "https://evil.example/", "/.gateway/logout"])
async def test_unsafe_rd_lands_on_the_root(tmp_path: Path, rd: str) -> None:
    async with oidc_env(tmp_path) as env:
        await env.signup("alice@acme.test")
        resp = await env.login(rd)
        assert resp.status == 303 and resp.headers["Location"] == "/"


async def test_tampered_state_is_refused(tmp_path: Path) -> None:
    async with oidc_env(tmp_path) as env:
        await env.signup("alice@acme.test")
        flow, url = await env.start()
        callback = await env.authorize(url)
        tampered = callback.update_query(state=callback.query["state"] + "x")
        resp = await env.callback(tampered, flow)
        assert resp.status == 400 and session_cookie(resp) is None and flow_cleared(resp)
        assert env.idp.token_requests == 0


@pytest.mark.parametrize("cookie", [None, "garbage", "tampered"])
async def test_missing_or_forged_flow_cookie_is_refused(tmp_path: Path, cookie: str | None) -> None:
    async with oidc_env(tmp_path) as env:
        await env.signup("alice@acme.test")
        flow, url = await env.start()
        callback = await env.authorize(url)
        presented = {"garbage": "abc", "tampered": flow[:-2] + ("A" if flow[-2] != "A" else "B")}
        resp = await env.callback(callback, presented.get(cookie or ""))
        assert resp.status == 400 and session_cookie(resp) is None


async def test_expired_flow_cookie_is_refused(tmp_path: Path) -> None:
    async with oidc_env(tmp_path) as env:
        await env.signup("alice@acme.test")
        flow, url = await env.start()
        from gateway.web.oidc import OIDC

        sealer = env.gw.app[OIDC].sealer
        assert sealer is not None
        sealer._clock = lambda: time.time() + 3600
        resp = await env.callback(await env.authorize(url), flow)
        assert resp.status == 400


def _now() -> int:
    return int(time.time())


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        pytest.param({"nonce": "not-the-nonce"}, "nonce mismatch", id="nonce"),
        pytest.param({"nonce": None}, "nonce mismatch", id="nonce-missing"),
        pytest.param({"iss": "http://127.0.0.1:1"}, "InvalidIssuerError", id="issuer"),
        pytest.param({"aud": "another-client"}, "InvalidAudienceError", id="audience"),
        pytest.param(
            {"aud": ["gateway-test-client", "other"]}, "another party", id="audience-without-azp"
        ),
        pytest.param({"azp": "other"}, "another party", id="azp"),
        pytest.param(
            {"exp": _now() - 3600, "iat": _now() - 4000}, "ExpiredSignatureError", id="expired"
        ),
        pytest.param({"exp": None}, "MissingRequiredClaimError", id="no-expiry"),
    ],
)
async def test_tampered_id_token_claims_are_refused(
    tmp_path: Path, overrides: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with oidc_env(tmp_path) as env:
        await env.signup("alice@acme.test")
        env.idp.id_token_overrides = overrides
        resp = await env.login()
        assert resp.status == 401 and session_cookie(resp) is None
        assert reason in caplog.text


async def test_signature_by_an_unpublished_key_is_refused(tmp_path: Path) -> None:
    async with oidc_env(tmp_path) as env:
        await env.signup("alice@acme.test")
        env.idp.sign_with = new_rsa_key()
        assert (await env.login()).status == 401


async def test_algorithm_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    async with oidc_env(tmp_path, algorithms=["ES256"]) as env:
        await env.signup("alice@acme.test")
        assert (await env.login()).status == 401


@pytest.mark.parametrize("alg", ["none", "HS256"])
async def test_none_and_hmac_with_the_public_key_are_refused(tmp_path: Path, alg: str) -> None:
    async with oidc_env(tmp_path) as env:
        await env.signup("alice@acme.test")
        public = env.idp.keys["rsa-1"].public_key()
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        original = env.idp.id_token

        def forge(grant: Any) -> str:
            claims = jwt_claims(original(grant))
            header = {"alg": alg, "kid": "rsa-1", "typ": "JWT"}
            return forged_token(header, claims, pem if alg == "HS256" else None)

        env.idp.id_token = forge  # type: ignore[method-assign]
        assert (await env.login()).status == 401


def jwt_claims(token: str) -> dict[str, Any]:
    import jwt

    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


async def test_a_code_from_another_login_fails_pkce(tmp_path: Path) -> None:
    async with oidc_env(tmp_path) as env:
        await env.signup("alice@acme.test")
        _, victim_url = await env.start()
        injected = await env.authorize(victim_url)
        flow, own_url = await env.start()
        own = await env.authorize(own_url)
        mixed = own.update_query(code=injected.query["code"])
        resp = await env.callback(mixed, flow)
        assert resp.status == 401 and session_cookie(resp) is None
        assert env.idp.token_requests == 1


async def test_discovery_naming_another_issuer_stops_the_login(tmp_path: Path) -> None:
    async with oidc_env(tmp_path) as env:
        env.idp.discovery_issuer = "https://evil.example"
        resp = await env.gw.get("/.gateway/oidc/acme/start", allow_redirects=False)
        assert resp.status == 502 and FLOW not in resp.cookies


async def test_a_tenant_without_a_provider_is_404(tmp_path: Path) -> None:
    async with oidc_env(tmp_path) as env:
        resp = await env.gw.get("/.gateway/oidc/other/start", allow_redirects=False)
        assert resp.status == 404


async def test_provider_error_is_refused(tmp_path: Path) -> None:
    async with oidc_env(tmp_path) as env:
        flow, url = await env.start()
        callback = await env.authorize(url)
        denied = callback.with_query(state=callback.query["state"], error="access_denied")
        assert (await env.callback(denied, flow)).status == 401


async def test_unverified_email_is_refused(tmp_path: Path) -> None:
    async with oidc_env(tmp_path) as env:
        await env.signup("alice@acme.test")
        env.idp.user = {"email": "alice@acme.test", "email_verified": False}
        assert (await env.login()).status == 403


async def test_without_jit_an_unknown_email_or_non_member_is_refused(tmp_path: Path) -> None:
    async with oidc_env(tmp_path) as env:
        await env.signup("alice@acme.test")
        env.idp.user = {"email": "nobody@acme.test", "email_verified": True}
        assert (await env.login()).status == 403
        await env.signup("bob@acme.test", tenant="other")
        env.idp.user = {"email": "bob@acme.test", "email_verified": True}
        assert (await env.login()).status == 403


async def test_jit_creates_a_member_with_the_default_role(tmp_path: Path) -> None:
    async with oidc_env(tmp_path, jit={"enabled": True, "role": "editor"}) as env:
        await env.signup("alice@acme.test")
        env.idp.user = {"email": "Carol@Acme.test", "email_verified": True}
        resp = await env.login()
        assert resp.status == 303
        token = session_cookie(resp)
        assert token is not None
        body = await env.session(token)
        assert body["user"]["email"] == "carol@acme.test" and body["roles"] == ["editor"]
        again = await env.login()
        assert (await env.session(session_cookie(again) or ""))["user"] == body["user"]
        identity = env.gw.app[AUTH_SERVICES].identity
        signin = await identity.signin("carol@acme.test", "", None, RequestContext())
        assert signin is None  # a JIT account has no usable password


async def test_jit_adds_an_existing_account_to_the_tenant(tmp_path: Path) -> None:
    async with oidc_env(tmp_path, jit={"enabled": True}) as env:
        await env.signup("alice@acme.test")
        user_id = await env.signup("bob@acme.test", tenant="other")
        env.idp.user = {"email": "bob@acme.test", "email_verified": True}
        resp = await env.login()
        body = await env.session(session_cookie(resp) or "")
        assert body["user"]["id"] == user_id and body["roles"] == ["viewer"]
        assert body["tenant"]["slug"] == "acme"


async def test_email_domains_limit_what_the_provider_vouches_for(tmp_path: Path) -> None:
    async with oidc_env(tmp_path, email_domains=["acme.test"], jit={"enabled": True}) as env:
        await env.signup("alice@acme.test")
        await env.signup("admin@other.test", tenant="other")
        env.idp.user = {"email": "admin@other.test", "email_verified": True}
        assert (await env.login()).status == 403
        env.idp.user = {"email": "alice@acme.test", "email_verified": True}
        assert (await env.login()).status == 303


async def test_a_presented_session_is_retired_not_adopted(tmp_path: Path) -> None:
    async with oidc_env(tmp_path) as env:
        await env.signup("alice@acme.test")
        first = session_cookie(await env.login())
        assert first is not None
        flow, url = await env.start()
        resp = await env.callback(await env.authorize(url), flow, f"{SESSION}={first}")
        second = session_cookie(resp)
        assert second is not None and second != first
        old = await env.gw.get("/.gateway/auth/session", headers={"Cookie": f"{SESSION}={first}"})
        assert old.status == 401


async def test_the_callback_code_is_single_use(tmp_path: Path) -> None:
    async with oidc_env(tmp_path) as env:
        await env.signup("alice@acme.test")
        flow, url = await env.start()
        callback = await env.authorize(url)
        assert (await env.callback(callback, flow)).status == 303
        assert (await env.callback(callback, flow)).status == 401
