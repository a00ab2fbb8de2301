"""Hypothesis fuzzers for the parsers an attacker reaches first.

tests/unit/test_paths_properties.py, test_redirects.py and test_headers.py already hold the
basic properties (idempotence, lenient upstreams, owned headers removed); the fuzzers here
add the attacker's view: a denied prefix reached in any spelling, browser resolution of `rd`,
header spellings mixed with junk, the cookie parser, and the configuration loader on arbitrary
documents and environments.
"""

from __future__ import annotations

import string
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.config import ConfigError, CookieConfig, load_config
from gateway.pipeline.paths import PathRejected, compile_pattern, normalize_path
from gateway.proxy.headers import (
    DEFAULT_OWNED_HEADERS,
    HOP_BY_HOP,
    METHOD_OVERRIDE_HEADERS,
    OwnedHeaders,
    build_upstream_request_headers,
    canonical_name,
)
from gateway.sessions.cookies import read_session_token
from gateway.web.redirects import safe_redirect_target

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------
# Path normalizer: a denied prefix is reached in no spelling
# ---------------------------------------------------------------------------------------

DENIED = compile_pattern("/admin/*")

_ADMIN_SPELLINGS = st.sampled_from(
    ["admin", "%61dmin", "adm%69n", "%41dmin", "ADMIN", "adm%2569n", "admin%2f", "ad%00min"]
)
_NOISE = st.sampled_from(
    [".", "..", "%2e", "%2e%2e", ".%2e", "", "x", "%2f", "%5c", "\\", ";", "a;b", "%3b", "%25",
     "%252e%252e", "%c0%ae", "%ef%bc%8e", "\uff0e\uff0e", "~", "%7e", " ", "%20", "\t"]
)  # fmt: skip


@st.composite
def admin_attempts(draw: st.DrawFn) -> str:
    """Paths mixing dot segments, encodings and separators around an `admin` segment."""
    segments = draw(st.lists(_NOISE, max_size=4))
    segments.insert(draw(st.integers(0, len(segments))), draw(_ADMIN_SPELLINGS))
    segments += draw(st.lists(_NOISE | st.just("x"), max_size=3))
    sep = draw(st.sampled_from(["/", "//", "/./"]))
    return "/" + sep.join(segments)


def lenient(path: str) -> str:
    """What a lenient upstream (decode twice, `\\` as `/`, drop `;params`, resolve dots,
    collapse slashes, fold fullwidth dots) could make of a forwarded path."""
    text = unquote(unquote(path)).replace("\\", "/").replace("\uff0e", ".")
    out: list[str] = []
    for segment in text.split("/"):
        segment = segment.split(";", 1)[0]
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    return "/" + "/".join(out)


@FUZZ
@given(admin_attempts())
@example("/x/..%2fadmin/x")
@example("/%2e%2e/admin")
@example("/public/..;/admin/x")
def test_no_spelling_reaches_a_denied_prefix_unseen(raw: str) -> None:
    """Envoy CVE-2019-9901 / Authelia GHSA-68wm-pfjf-wqp6 / Tomcat `..;/` class: whatever the
    spelling, either the normalizer refuses it, or the policy sees the denied prefix, or no
    lenient upstream could reach it either."""
    try:
        normalized = normalize_path(raw)
    except PathRejected:
        return
    assert normalize_path(normalized) == normalized
    if not DENIED(normalized):
        assert not DENIED(lenient(normalized)), (raw, normalized, lenient(normalized))


# ---------------------------------------------------------------------------------------
# Header stripper: owned names in any spelling, mixed with junk and Connection lists
# ---------------------------------------------------------------------------------------

OWNED = OwnedHeaders(["X-Custom-Identity"])
_SEPARATORS = st.sampled_from(["-", "_", "."])


@st.composite
def spelled(draw: st.DrawFn, name: str) -> str:
    chars = []
    for ch in name:
        if ch == "-":
            chars.append(draw(_SEPARATORS))
        elif ch.isalpha():
            chars.append(ch.upper() if draw(st.booleans()) else ch.lower())
        else:
            chars.append(ch)
    return "".join(chars)


_OWNED_SPELLING = st.sampled_from([*DEFAULT_OWNED_HEADERS, "X-Custom-Identity"]).flatmap(spelled)
_JUNK_NAMES = st.text(alphabet=string.ascii_letters + "-", min_size=1, max_size=12).filter(
    lambda n: not OWNED.contains(n) and canonical_name(n) not in {"connection", "host"}
)
_AUTH_PREFIX = st.sampled_from(["X-Auth-Request-", "x_auth_request_", "X.AUTH.REQUEST."]).flatmap(
    lambda p: st.text(alphabet=string.ascii_letters, min_size=1, max_size=8).map(lambda s: p + s)
)


@FUZZ
@given(
    forged=st.lists(_OWNED_SPELLING | _AUTH_PREFIX, min_size=1, max_size=10),
    junk=st.lists(st.tuples(_JUNK_NAMES, st.text(string.printable, max_size=8)), max_size=8),
    connection=st.lists(_OWNED_SPELLING | _JUNK_NAMES, max_size=4),
    seed=st.randoms(use_true_random=False),
)
def test_stripper_removes_every_owned_spelling_and_keeps_the_rest(
    forged: list[str], junk: list[tuple[str, str]], connection: list[str], seed: object
) -> None:
    """oauth2-proxy underscore smuggling, duplicate headers, Traefik CVE-2024-45410 (a
    Connection list naming identity headers): no owned header survives, other end-to-end
    headers survive in order unless the client's own Connection header names them."""
    pairs = [*junk] + [(name, "forged") for name in forged]
    seed.shuffle(pairs)  # type: ignore[attr-defined]
    if connection:
        pairs.append(("Connection", ", ".join(connection)))
    out = build_upstream_request_headers(CIMultiDictProxy(CIMultiDict(pairs)), OWNED)
    assert not [name for name in out if OWNED.contains(name)]
    assert "forged" not in out.values()
    named = {canonical_name(n) for n in connection}
    # Hop-by-hop, method-override and Host names are removed by design, whatever the case.
    dropped = named | HOP_BY_HOP | METHOD_OVERRIDE_HEADERS | {"host"}
    kept = [(n, v) for n, v in junk if canonical_name(n) not in dropped]
    assert [(n, v) for n, v in out.items() if (n, v) in kept] == [
        (n, v) for n, v in pairs if (n, v) in kept
    ]


# ---------------------------------------------------------------------------------------
# rd validator: what a browser does with the Location
# ---------------------------------------------------------------------------------------

_RD_ATOMS = st.sampled_from(
    ["/", "//", "\\", "%2f", "%5c", "%09", "%0a", "%0d", "%00", "%25", "evil.com", "@", ":",
     "?", "#", ".", "..", "\t", "\n", " ", "\uff0f", "%ef%bc%8f", "https:", "javascript:",
     "app", "x", ".gateway", "%2e", ";", "&", "="]
)  # fmt: skip


@FUZZ
@given(st.lists(_RD_ATOMS, max_size=10).map("".join) | st.text(max_size=40))
@example("/\\evil.com")
@example("/%09/evil.com")
def test_rd_never_leaves_the_origin_when_resolved_by_a_browser(rd: str) -> None:
    """oauth2-proxy CVE-2020-11053 (`/\\evil.com`) and CVE-2020-5233 (`/\\t/evil.com`): after
    WHATWG-style resolution (tabs and newlines removed, `\\` as `/`), the result stays on the
    gateway's origin and carries no control characters."""
    result = safe_redirect_target(rd, default="/home")
    assert result.startswith("/")
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in result)
    browser = result.replace("\\", "/")
    resolved = urlsplit(urljoin("https://app.example/start", browser))
    assert resolved.netloc == "app.example", (rd, result)
    assert resolved.scheme == "https"


# ---------------------------------------------------------------------------------------
# Cookie parser
# ---------------------------------------------------------------------------------------

INSECURE = CookieConfig(secure=False)
_COOKIE_ATOMS = st.sampled_from(
    ["gw_session=abc", "gw_session=def", "gw_session", "GW_SESSION=x", " gw_session = abc ",
     "gw_session=", "a=1", ";", "; ", "=", "gw_sessionx=1", "xgw_session=1", '"',
     "gw_session=\"q\"", "\x00", ",", "gw_session=abc,gw_session=def"]
)  # fmt: skip


@FUZZ
@given(st.lists(_COOKIE_ATOMS | st.text(max_size=8), max_size=8).map("; ".join))
def test_cookie_parser_never_guesses(header: str) -> None:
    """Cookie tossing (a sibling subdomain planting a second `gw_session`, the class behind
    Pomerium/oauth2-proxy cookie advisories): the token is returned only when exactly one
    distinct, non-empty value is present, and the parser never raises."""
    token = read_session_token(header, INSECURE)
    values = set()
    for pair in header.split(";"):
        key, sep, value = pair.strip().partition("=")
        if sep and key.strip() == "gw_session":
            values.add(value.strip())
    if token is None:
        assert len(values) != 1 or values == {""}
    else:
        assert values == {token}


# ---------------------------------------------------------------------------------------
# Configuration loader: only ConfigError, and no secret in any message
# ---------------------------------------------------------------------------------------

SECRET = "hunter2-S3CR3T"
_KEYS = st.sampled_from(
    ["listen", "public_url", "database_url", "redis_url", "upstreams", "cookie", "tenancy",
     "limits", "tls", "rate_limits", "headers", "metrics", "workers", "trusted_proxies",
     "jwt_issuers", "oidc", "mail", "nonsense"]
)  # fmt: skip
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=20), st.just(f"postgresql://u:{SECRET}@h/db"),
    st.just(f"redis://:{SECRET}@h:6379"), st.just({"cert_file": "/nope", "key_file": None}),
)  # fmt: skip
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_ENV = st.dictionaries(
    st.sampled_from(
        ["GATEWAY_LISTEN", "GATEWAY_UPSTREAMS__0__URL", "GATEWAY_UPSTREAMS__0__NAME",
         "GATEWAY_TLS__CERT_FILE", "GATEWAY_LIMITS__HEADER_READ_TIMEOUT", "GATEWAY_DATABASE_URL",
         "GATEWAY_UPSTREAMS__0__ALLOWED_CONTENT_TYPES", "GATEWAY_NOPE", "GATEWAY_COOKIE__SECURE"]
    ),
    st.text(max_size=20) | st.just(f"postgresql://u:{SECRET}@h/db"),
    max_size=4,
)  # fmt: skip


def _load_problems(path: Path, env: dict[str, str]) -> str:
    """The ConfigError text of loading `path` ("" when it loads); any other exception fails."""
    try:
        load_config(path, env=env)
    except ConfigError as exc:
        return str(exc)
    return ""


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config")


@FUZZ
@given(document=st.dictionaries(_KEYS, _VALUES, max_size=5), env=_ENV)
def test_config_loader_only_raises_config_error_and_never_echoes_secrets(
    config_dir: Path, document: dict[str, object], env: dict[str, str]
) -> None:
    """Config errors that echo credentials (the Authelia/Ory "secret in error output" class;
    contract: a secret value is never echoed) or crash with a traceback."""
    path = config_dir / "gateway.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    assert SECRET not in _load_problems(path, env)


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_config_loader_survives_arbitrary_bytes(config_dir: Path, raw: bytes) -> None:
    """Hostile or corrupt files: never a traceback, only ConfigError."""
    path = config_dir / "raw.yaml"
    path.write_bytes(raw + b"\ndatabase_url: postgresql://u:" + SECRET.encode() + b"@h/d\n")
    assert SECRET not in _load_problems(path, {})
