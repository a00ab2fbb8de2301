"""The hosted browser pages (`/.gateway/login`, `/signup`, `/logout`), end to end.

They work without JavaScript: plain forms, 303 on success, and `rd` only ever redirects to a
relative path on the same host.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import unescape
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.auth_helpers import (
    PASSWORD,
    Account,
    AuthEnv,
    assert_error,
    auth_env,
    cookie_attributes,
    echo,
    http_client,
    new_email,
    session_info,
    set_cookie_headers,
    set_cookie_value,
    signup,
    unique,
)
from tests.support.net import parse_response, raw_request

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AuthEnv]:
    async with auth_env(tmp_path_factory.mktemp("hosted")) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def user(env: AuthEnv) -> Account:
    async with http_client() as http:
        return await signup(env, http)


async def _post_form(
    env: AuthEnv,
    http: aiohttp.ClientSession,
    path: str,
    form: dict[str, str],
    headers: dict[str, str] | None = None,
) -> tuple[int, str, aiohttp.ClientResponse]:
    async with http.post(
        f"{env.url}{path}",
        data=form,
        headers={"Origin": env.origin, **HTML, **(headers or {})},
        allow_redirects=False,
    ) as resp:
        text = await resp.text()
    return resp.status, text, resp


async def _get_page(
    env: AuthEnv, http: aiohttp.ClientSession, path: str, headers: dict[str, str] | None = None
) -> tuple[int, str, aiohttp.ClientResponse]:
    async with http.get(
        f"{env.url}{path}", headers={**HTML, **(headers or {})}, allow_redirects=False
    ) as resp:
        text = await resp.text()
    return resp.status, text, resp


def _forms(html: str) -> list[str]:
    return re.findall(r"<form\b.*?</form>", html, flags=re.S | re.I)


def _input_names(form: str) -> set[str]:
    return set(re.findall(r'<input\b[^>]*\bname="([^"]+)"', form, flags=re.I))


def _hidden_rd(html: str) -> str:
    match = re.search(r'<input\b[^>]*name="rd"[^>]*value="([^"]*)"', html, flags=re.I)
    assert match, html
    return unescape(match.group(1))


# --- login -----------------------------------------------------------------------------------


async def test_login_page_is_a_plain_form(env: AuthEnv) -> None:
    async with http_client() as http:
        status, html, resp = await _get_page(env, http, "/.gateway/login?rd=/dashboard")
    assert status == 200
    assert resp.content_type == "text/html"
    forms = _forms(html)
    assert len(forms) == 1, html
    form = forms[0]
    assert re.search(r'method="post"', form, flags=re.I)
    assert re.search(r'action="/\.gateway/login"', form, flags=re.I)
    assert {"email", "password", "rd"} <= _input_names(form)
    assert re.search(r'type="password"', form, flags=re.I)
    assert "<script" not in html.lower()
    assert _hidden_rd(html) == "/dashboard"


async def test_login_form_post_redirects_to_rd_with_a_cookie(env: AuthEnv, user: Account) -> None:
    async with http_client() as http:
        status, _, resp = await _post_form(
            env,
            http,
            "/.gateway/login",
            {"email": user.email, "password": user.password, "rd": "/dashboard?tab=1"},
        )
        assert status == 303
        assert resp.headers["Location"] == "/dashboard?tab=1"
        token = set_cookie_value(resp, env.cookie_name)
        assert token and token != user.session
        _, _, attrs = cookie_attributes(
            next(h for h in set_cookie_headers(resp) if h.startswith(env.cookie_name + "="))
        )
        assert "httponly" in attrs
        status, info, _ = await session_info(env, http, token)
    assert status == 200, info
    assert info["user"]["id"] == user.user_id


async def test_login_without_rd_goes_home(env: AuthEnv, user: Account) -> None:
    async with http_client() as http:
        status, _, resp = await _post_form(
            env, http, "/.gateway/login", {"email": user.email, "password": user.password}
        )
    assert status == 303
    assert resp.headers["Location"] == "/"


async def test_login_wrong_password_is_a_401_page_with_a_generic_message(
    env: AuthEnv, user: Account
) -> None:
    unknown = new_email()
    async with http_client() as http:
        s1, wrong_pw, r1 = await _post_form(
            env, http, "/.gateway/login", {"email": user.email, "password": "nope-" + PASSWORD}
        )
        s2, no_user, r2 = await _post_form(
            env, http, "/.gateway/login", {"email": unknown, "password": PASSWORD}
        )
    assert s1 == s2 == 401
    assert r1.content_type == r2.content_type == "text/html"
    for resp in (r1, r2):
        assert set_cookie_value(resp, env.cookie_name) is None
    # The pages differ at most in the email echoed back into the form.
    assert wrong_pw.replace(user.email, "EMAIL") == no_user.replace(unknown, "EMAIL")
    assert _forms(wrong_pw), wrong_pw
    assert "nope-" + PASSWORD not in wrong_pw
    assert PASSWORD not in no_user


async def test_login_from_another_site_is_refused(env: AuthEnv, user: Account) -> None:
    async with http_client() as http:
        status, _, resp = await _post_form(
            env,
            http,
            "/.gateway/login",
            {"email": user.email, "password": user.password, "rd": "/"},
            headers={"Origin": "https://evil.example"},
        )
    assert status == 403
    assert set_cookie_value(resp, env.cookie_name) is None


async def test_browser_is_redirected_to_login_and_back(env: AuthEnv, user: Account) -> None:
    async with http_client() as http:
        status, _, resp = await _get_page(env, http, "/private/page?x=1&y=2")
        assert status == 302
        location = urlsplit(resp.headers["Location"])
        assert location.scheme == "" and location.netloc == ""
        assert location.path == "/.gateway/login"
        rd = parse_qs(location.query)["rd"]
        assert rd == ["/private/page?x=1&y=2"]
        # The login page carries rd through the form, and the form post sends the user back.
        status, html, _ = await _get_page(env, http, resp.headers["Location"])
        assert status == 200
        assert _hidden_rd(html) == rd[0]
        status, _, resp = await _post_form(
            env,
            http,
            "/.gateway/login",
            {"email": user.email, "password": user.password, "rd": rd[0]},
        )
        assert status == 303
        assert resp.headers["Location"] == "/private/page?x=1&y=2"
        token = set_cookie_value(resp, env.cookie_name)
        assert token
        status, body, _ = await echo(
            env, http, resp.headers["Location"], headers={**HTML, **env.cookie(token)}
        )
    assert status == 200, body
    assert body["path"] == "/private/page"


@pytest.mark.parametrize(
    "accept", [None, "application/json", "*/*"], ids=["no-accept", "json", "any"]
)
async def test_api_clients_get_401_json(env: AuthEnv, accept: str | None) -> None:
    headers = {"Accept": accept} if accept else {}
    async with http_client() as http:
        status, body, resp = await echo(env, http, "/private/page", headers=headers)
    assert status == 401, body
    assert resp.content_type == "application/json"
    assert_error(body, "unauthenticated")


# --- sign-up ---------------------------------------------------------------------------------


async def test_signup_page_is_a_plain_form(env: AuthEnv) -> None:
    async with http_client() as http:
        status, html, resp = await _get_page(env, http, "/.gateway/signup")
    assert status == 200
    assert resp.content_type == "text/html"
    forms = _forms(html)
    assert len(forms) == 1, html
    assert re.search(r'action="/\.gateway/signup"', forms[0], flags=re.I)
    assert {"email", "password", "tenant"} <= _input_names(forms[0])
    assert "<script" not in html.lower()


async def test_signup_form_creates_the_account(env: AuthEnv) -> None:
    email, slug = new_email(), unique("form")
    async with http_client() as http:
        status, _, resp = await _post_form(
            env,
            http,
            "/.gateway/signup",
            {"email": email, "password": PASSWORD, "tenant": slug, "rd": "/welcome"},
        )
        assert status == 303
        assert resp.headers["Location"] == "/welcome"
        token = set_cookie_value(resp, env.cookie_name)
        assert token
        status, info, _ = await session_info(env, http, token)
    assert status == 200, info
    assert info["user"]["email"] == email
    assert info["tenant"]["slug"] == slug
    assert info["roles"] == ["admin"]


async def test_signup_form_errors_are_shown_on_the_page(env: AuthEnv, user: Account) -> None:
    async with http_client() as http:
        status, html, resp = await _post_form(
            env,
            http,
            "/.gateway/signup",
            {"email": new_email(), "password": "short", "tenant": unique("weak")},
        )
        assert status == 422
        assert resp.content_type == "text/html"
        assert "10" in html and _forms(html)
        assert set_cookie_value(resp, env.cookie_name) is None
        status, html, resp = await _post_form(
            env,
            http,
            "/.gateway/signup",
            {"email": new_email(), "password": PASSWORD, "tenant": user.tenant_slug},
        )
        assert status == 409
        assert set_cookie_value(resp, env.cookie_name) is None


# --- logout ----------------------------------------------------------------------------------


async def test_logout_page_shows_a_form_and_post_signs_out(env: AuthEnv) -> None:
    async with http_client() as http:
        account = await signup(env, http)
        status, html, _ = await _get_page(
            env, http, "/.gateway/logout", headers=env.cookie(account.session)
        )
        assert status == 200
        forms = _forms(html)
        assert len(forms) == 1, html
        assert re.search(r'method="post"', forms[0], flags=re.I)
        assert re.search(r'action="/\.gateway/logout"', forms[0], flags=re.I)
        # GET never signs out.
        assert (await session_info(env, http, account.session))[0] == 200
        # A cross-site POST does not either.
        status, _, _ = await _post_form(
            env,
            http,
            "/.gateway/logout",
            {},
            headers={**env.cookie(account.session), "Origin": "https://evil.example"},
        )
        assert status == 403
        assert (await session_info(env, http, account.session))[0] == 200
        status, _, resp = await _post_form(
            env, http, "/.gateway/logout", {}, headers=env.cookie(account.session)
        )
        assert status == 303
        assert resp.headers["Location"] == "/.gateway/login"
        cleared = [
            h for h in set_cookie_headers(resp) if cookie_attributes(h)[0] == env.cookie_name
        ]
        assert len(cleared) == 1
        _, value, attrs = cookie_attributes(cleared[0])
        assert value in ("", '""')
        assert attrs.get("max-age") == "0" or "expires" in attrs
        assert (await session_info(env, http, account.session))[0] == 401


# --- open redirects --------------------------------------------------------------------------

UNSAFE_RD = [
    "//evil.com",
    "///evil.com",
    "////evil.com/",
    "/\\evil.com",
    "\\\\evil.com",
    "\\/evil.com",
    "https://evil.com",
    "http://evil.com/path",
    "HTTPS://evil.com",
    "https:evil.com",
    "https:/evil.com",
    "evil.com",
    "@evil.com",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "/%2f%2fevil.com",
    "/%2F%2Fevil.com",
    "/%252f%252fevil.com",
    "/%5cevil.com",
    "/%5C%5Cevil.com",
    "\t//evil.com",
    " //evil.com",
    "/\t/evil.com",
    "/\n/evil.com",
    "//%09/evil.com",
    "/%09/evil.com",
    "/%0a/evil.com",
    "/%0d/evil.com",
    "/%0d%0aSet-Cookie:x=1",
    "/\r\nSet-Cookie: x=1",
    "/x?%0d%0aSet-Cookie:x=1",
    "/\uff0f\uff0fevil.com",  # fullwidth solidus
    "\uff0f\uff0fevil.com",
    "/\uff0fevil.com",
    "/%EF%BC%8F%EF%BC%8Fevil.com",
    "//evil\u3002com",  # ideographic full stop
    "/./%2f/evil.com",
    "/a/..//evil.com",
    "/.//evil.com",
    "/.gateway/logout",
    "/.GATEWAY/logout",
    "/.gateway//logout",
    "/x/../.gateway/logout",
    "/.gateway/%6cogout",
    "/.gateway/login?rd=//evil.com",
    "/%00",
    "/" + "a" * 5000,
]

SAFE_RD = [
    "/",
    "/dashboard",
    "/a/b/c?d=e&f=g#h",
    "/search?q=a%20b",
    "/@evil.com",  # a path on this host, never userinfo
    "/javascript:alert(1)",  # a path segment, never a scheme
    "/.gateway/console",
]


@pytest.mark.parametrize("rd", UNSAFE_RD, ids=[repr(p)[:40] for p in UNSAFE_RD])
async def test_login_never_redirects_off_site(env: AuthEnv, user: Account, rd: str) -> None:
    async with http_client() as http:
        status, _, resp = await _post_form(
            env, http, "/.gateway/login", {"email": user.email, "password": user.password, "rd": rd}
        )
        assert status == 303
        assert resp.headers.getall("Location") == ["/"]
        assert set_cookie_value(resp, env.cookie_name)
        assert not any("x=1" in h for h in set_cookie_headers(resp))
        # The form never carries the unsafe value either.
        async with http.get(
            f"{env.url}/.gateway/login", params={"rd": rd}, allow_redirects=False
        ) as page:
            assert page.status == 200
            assert _hidden_rd(await page.text()) == "/"


@pytest.mark.parametrize("rd", SAFE_RD)
async def test_login_keeps_a_safe_relative_rd(env: AuthEnv, user: Account, rd: str) -> None:
    async with http_client() as http:
        status, _, resp = await _post_form(
            env, http, "/.gateway/login", {"email": user.email, "password": user.password, "rd": rd}
        )
    assert status == 303
    assert resp.headers["Location"] == rd


@pytest.mark.parametrize("rd", ["//evil.com", "https://evil.com", "/%2f%2fevil.com"])
async def test_signup_never_redirects_off_site(env: AuthEnv, rd: str) -> None:
    async with http_client() as http:
        status, _, resp = await _post_form(
            env,
            http,
            "/.gateway/signup",
            {"email": new_email(), "password": PASSWORD, "tenant": unique("rd"), "rd": rd},
        )
    assert status == 303
    assert resp.headers["Location"] == "/"


async def test_rd_is_escaped_in_the_page(env: AuthEnv) -> None:
    payload = '/x"><script>alert(1)</script>'
    async with (
        http_client() as http,
        http.get(
            f"{env.url}/.gateway/login", params={"rd": payload}, allow_redirects=False
        ) as resp,
    ):
        html = await resp.text()
    assert "<script>" not in html


@pytest.mark.parametrize("path", ["//evil.com/x", "/%2F%2Fevil.com", "/%5Cevil.com"])
async def test_login_round_trip_from_a_hostile_path_stays_on_site(
    env: AuthEnv, user: Account, path: str
) -> None:
    raw = await raw_request(
        env.gw.host,
        env.gw.port,
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{env.gw.port}\r\nAccept: text/html\r\n"
            "Connection: close\r\n\r\n"
        ).encode(),
    )
    status, headers, _ = parse_response(raw)
    locations = [v for k, v in headers if k.lower() == "location"]
    if status != 302:
        # Refused outright (a malformed path) is fine too: no redirect at all.
        assert status in (400, 401, 404), (status, headers)
        return
    assert len(locations) == 1
    target = urlsplit(locations[0])
    assert (target.scheme, target.netloc, target.path) == ("", "", "/.gateway/login")
    rd = parse_qs(target.query).get("rd", ["/"])[0]
    async with http_client() as http:
        status, _, resp = await _post_form(
            env, http, "/.gateway/login", {"email": user.email, "password": user.password, "rd": rd}
        )
    assert status == 303
    location = resp.headers["Location"]
    assert location == "/", (rd, location)


async def test_hosted_login_never_adopts_a_presented_cookie(env: AuthEnv, user: Account) -> None:
    planted = "planted-by-attacker-" + "Z" * 30
    async with http_client() as http:
        status, _, resp = await _post_form(
            env,
            http,
            "/.gateway/login",
            {"email": user.email, "password": user.password, "rd": "/"},
            headers=env.cookie(planted),
        )
        assert status == 303
        issued = set_cookie_value(resp, env.cookie_name)
        assert issued and issued != planted
        assert (await session_info(env, http, planted))[0] == 401
        assert (await session_info(env, http, issued))[0] == 200
