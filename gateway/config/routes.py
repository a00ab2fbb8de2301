"""Upstreams, their route matches and rate-limit rules."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from gateway.config.fields import (
    ConfigModel,
    check_http_url,
    check_path_pattern,
    first_duplicate,
    is_hostname,
    is_token,
    parse_rate,
    problem,
)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
RateKey = Literal["ip", "user", "tenant", "route", "api_key"]


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError("a name of a-z, 0-9, '_' and '-', starting with a letter or digit, ≤63")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
PathPattern = Annotated[str, AfterValidator(check_path_pattern)]


class RateLimitMatch(ConfigModel):
    """Which requests a rule counts: a path pattern and, if non-empty, these methods only."""

    path: PathPattern = "/*"
    methods: tuple[str, ...] = ()

    @field_validator("methods", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple):
            return tuple(m.upper() if isinstance(m, str) else m for m in value)
        return value

    @field_validator("methods")
    @classmethod
    def _tokens(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not all(is_token(m) for m in value):
            raise ValueError("HTTP method names such as GET or POST")
        return value


class RateLimitRule(ConfigModel):
    """A limit of `rate` with `burst` per distinct `key` tuple; `per_second` is always > 0."""

    name: Name
    match: RateLimitMatch = Field(default_factory=RateLimitMatch)
    key: tuple[RateKey, ...] = Field(min_length=1)
    rate: str
    burst: int = Field(ge=1)

    @field_validator("key")
    @classmethod
    def _unique_key(cls, value: tuple[RateKey, ...]) -> tuple[RateKey, ...]:
        if len(set(value)) != len(value):
            raise ValueError("key parts without repeats")
        return value

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_rate(value)
        return value.replace(" ", "")

    @property
    def per_second(self) -> float:
        """Sustained events per second allowed by `rate`."""
        return parse_rate(self.rate)


class RouteMatch(ConfigModel):
    """A request matches when its host matches `host` (if set) and its path starts with
    `path_prefix`. `host` is lower-case, optionally `*.` for any single-level subdomain."""

    host: str | None = None
    path_prefix: str = "/"

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = value.lower()
        if not is_hostname(host.removeprefix("*.")):
            raise ValueError("a hostname such as app.example.com or *.example.com (no port)")
        return host

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if (
            not value.startswith("/")
            or not value.isprintable()
            or any(c in value for c in " ?#*\\")
        ):
            raise ValueError('a path starting with "/" without spaces, ?, #, * or \\')
        if {".", ".."} & set(value.split("/")):
            raise ValueError("a path without . or .. segments")
        return value


class Timeouts(ConfigModel):
    """Upstream timeouts in seconds, each in (0, 3600]."""

    connect: float = Field(default=5.0, gt=0, le=3600)
    read: float = Field(default=60.0, gt=0, le=3600)


FEATURE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
TENANT_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class WebhookVerification(ConfigModel):
    """A route's webhook signature check: `header` carries `t=<unix>,v1=<hex HMAC-SHA256>` of
    `"<t>." + body` under the tenant's secret `secret`; `tolerance` seconds of clock skew, also
    the replay window. `tenant` pins the tenant (slug or id); else the request's tenant."""

    secret: str
    scheme: Literal["hmac-sha256"] = "hmac-sha256"
    header: str = "X-Webhook-Signature"
    tolerance: int = Field(default=300, ge=1, le=3600)
    tenant: str | None = None

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        if not SECRET_NAME.fullmatch(value):
            raise ValueError("a secret name of A-Z a-z 0-9 . _ -, starting with a letter or digit")
        return value

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        if not is_token(value):
            raise ValueError("an HTTP header name")
        return value

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        if value is not None and not TENANT_REF.fullmatch(value):
            raise ValueError("a tenant slug or id")
        return value


_MEDIA_TYPE = re.compile(r"^(\*/\*|[a-z0-9!#$&^_.+-]+/(\*|[a-z0-9!#$&^_.+-]+))$")


def check_media_range(value: str) -> str:
    """A lower-case `type/subtype`, `type/*` or `*/*` (parameters are not part of a match)."""
    media = value.strip().lower()
    if not _MEDIA_TYPE.fullmatch(media):
        raise ValueError("media types such as application/json, image/* or */*")
    return media


MediaRange = Annotated[str, AfterValidator(check_media_range)]


class UpstreamTls(ConfigModel):
    """TLS toward an https upstream: a private CA to trust instead of the system store, and a
    client certificate (mTLS), whose cert and key files go together."""

    ca_file: str | None = Field(default=None, min_length=1)
    client_cert_file: str | None = Field(default=None, min_length=1)
    client_key_file: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _pair(self) -> UpstreamTls:
        if (self.client_cert_file is None) != (self.client_key_file is None):
            missing = ".client_key_file" if self.client_key_file is None else ".client_cert_file"
            raise problem(missing, "null", "client_cert_file and client_key_file together")
        return self


class Upstream(ConfigModel):
    """One upstream app and the route that reaches it. `name` is the assertion's `aud`."""

    name: Name
    url: str
    match: RouteMatch = Field(default_factory=RouteMatch)
    public_paths: tuple[PathPattern, ...] = ()
    max_body_bytes: int = Field(default=10_485_760, ge=0)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    rate_limits: tuple[RateLimitRule, ...] = ()
    preserve_host: bool = False
    require_features: tuple[str, ...] = ()
    verify_webhook: WebhookVerification | None = None
    allowed_content_types: tuple[MediaRange, ...] | None = None
    """None: any body. Otherwise a body's Content-Type must match one entry (else 415)."""
    tls: UpstreamTls | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        check_http_url(value)
        return value

    @field_validator("require_features")
    @classmethod
    def _features(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not all(FEATURE_NAME.fullmatch(f) for f in value):
            raise ValueError("feature names of lower-case letters, digits, '-' and '_'")
        return value

    @model_validator(mode="after")
    def _unique_rules(self) -> Upstream:
        check_unique_rules(self.rate_limits, ".rate_limits")
        if self.tls is not None and not self.url.lower().startswith("https://"):
            raise problem(".tls", "set", "an https:// url when tls is configured")
        return self


def check_unique_rules(rules: tuple[RateLimitRule, ...], where: str) -> None:
    """Raise a problem naming the second of two rules that share a name."""
    duplicate = first_duplicate([rule.name for rule in rules])
    if duplicate is not None:
        first, again = duplicate
        shown = repr(rules[again].name)
        raise problem(f"{where}[{again}].name", shown, f"a unique rule name (also [{first}])")
