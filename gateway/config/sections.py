"""Configuration sections other than upstreams and headers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from gateway.config.fields import (
    ConfigModel,
    check_host_port,
    check_http_url,
    first_duplicate,
    is_hostname,
    is_token,
    problem,
)
from gateway.config.routes import RateLimitRule, check_unique_rules

HostPort = Annotated[str, AfterValidator(check_host_port)]
Seconds = Annotated[float, Field(gt=0, le=3600)]
Rules = tuple[RateLimitRule, ...]


class CookieConfig(ConfigModel):
    """The session cookie. Guarantees 60 ≤ idle_timeout ≤ lifetime (seconds) and that a
    `__Host-`/`__Secure-` name is only used with `secure: true`."""

    secure: bool = True
    idle_timeout: int = Field(default=1800, ge=60)
    lifetime: int = Field(default=43200, ge=60)
    name: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not is_token(value):
            raise ValueError("a cookie name made of HTTP token characters")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CookieConfig:
        if self.idle_timeout > self.lifetime:
            shown = f"{self.idle_timeout} > cookie.lifetime {self.lifetime}"
            raise problem(".idle_timeout", shown, "cookie.idle_timeout ≤ cookie.lifetime")
        prefixed = (self.name or "").startswith(("__Host-", "__Secure-"))
        if prefixed and not self.secure:
            # SECURITY: browsers drop prefixed cookies without Secure; fail loudly instead.
            raise problem(".secure", "false", "true when cookie.name has a __Host-/__Secure-")
        return self


class TenancyConfig(ConfigModel):
    """How a request names its tenant: subdomain of `subdomain_of`, header, or path prefix."""

    subdomain_of: str | None = None
    header: bool = False
    path_prefix: bool = False
    strip_prefix: bool = True

    @field_validator("subdomain_of")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        domain = value.lower()
        if not is_hostname(domain):
            raise ValueError("a domain name such as example.com (no scheme, port or wildcard)")
        return domain


class RateLimitsConfig(ConfigModel):
    """Global rules, per-plan rules, and whether the built-in auth limits apply.
    Rule names are unique within each list."""

    defaults: bool = True
    rules: tuple[RateLimitRule, ...] = ()
    plans: dict[str, tuple[RateLimitRule, ...]] = Field(default_factory=dict)

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, value: tuple[RateLimitRule, ...]) -> tuple[RateLimitRule, ...]:
        check_unique_rules(value, "")
        return value

    @field_validator("plans")
    @classmethod
    def _plans(cls, value: dict[str, Rules]) -> dict[str, Rules]:
        for plan, rules in value.items():
            if not is_hostname(plan) or "." in plan:
                raise problem(f".{plan}", repr(plan), "a plan name of a-z, 0-9 and '-'")
            check_unique_rules(rules, f".{plan}")
        return value


class MetricsConfig(ConfigModel):
    """The Prometheus listener; `listen: null` disables it."""

    listen: HostPort | None = "127.0.0.1:9464"


class LoggingConfig(ConfigModel):
    """Log level, format and access-log sampling (a ratio in [0, 1])."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    access_log: bool = True
    access_log_sample: float = Field(default=1.0, ge=0, le=1)


class LimitsConfig(ConfigModel):
    """Inbound request limits enforced before any stage runs."""

    max_header_bytes: int = Field(default=16384, ge=1024, le=1_048_576)
    max_headers: int = Field(default=100, ge=1, le=10_000)
    header_read_timeout: Seconds = 30.0
    body_read_timeout: Seconds = 60.0


def _check_readable_file(value: Path | None) -> Path | None:
    """A path to a PEM file; existence is checked when the gateway loads it (clear message)."""
    if value is not None and (not str(value).strip() or "\0" in str(value)):
        raise ValueError("a path to a PEM file")
    return value


PemFile = Annotated[Path, AfterValidator(_check_readable_file)]


class TlsConfig(ConfigModel):
    """TLS termination on the main listener: both files or neither. The files are re-read
    when they change (certificate renewal without restart); HSTS is sent while serving TLS."""

    cert_file: PemFile | None = None
    key_file: PemFile | None = None
    hsts_max_age: int = Field(default=31_536_000, ge=0, le=63_072_000)
    reload_interval: Seconds = 5.0

    @model_validator(mode="after")
    def _both(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            missing = ".key_file" if self.key_file is None else ".cert_file"
            raise problem(missing, "null", "tls.cert_file and tls.key_file together")
        return self

    @property
    def enabled(self) -> bool:
        """True when the main listener serves HTTPS."""
        return self.cert_file is not None


class PolicyConfig(ConfigModel):
    """Casbin model and rules files; None means the packaged policy/model.conf and
    policy/policy.csv."""

    model: Path | None = None
    rules: Path | None = None


class ForwardAuthConfig(ConfigModel):
    """Forward-auth mode (`/.gateway/verify`). `decision_cache_seconds`: how long the proxy
    in front may reuse an allowed answer (nginx `proxy_cache`, see
    examples/forward-auth/nginx-server.conf); 0, the default, lets it reuse none. Only
    answers that are safe to reuse are marked (`X-Accel-Expires`): never a denial, a
    rate-limited route, a method other than GET/HEAD, an answer setting a cookie or an
    external JWT's, and never for longer than the session lives or the assertion stays
    valid; an API key's for at most 1 s. At most 30."""

    # SECURITY: strict: `true` or `"5s"` must not silently become 1 second or an error later.
    decision_cache_seconds: int = Field(default=0, ge=0, le=30, strict=True)


class TracingConfig(ConfigModel):
    """OpenTelemetry export; no `otlp_endpoint` means spans are not exported."""

    otlp_endpoint: str | None = None
    service_name: str = Field(default="gateway", min_length=1)
    sample_ratio: float = Field(default=1.0, ge=0, le=1)

    @field_validator("otlp_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            check_http_url(value)
        return value


class StorageConfig(ConfigModel):
    """Scale-out tuning: PostgreSQL pool size and the Redis key prefix of this deployment."""

    pool_min: int = Field(default=1, ge=0, le=100)
    pool_max: int = Field(default=10, ge=1, le=500)
    redis_prefix: str = Field(
        default="gateway:", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$"
    )


ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


def check_algorithms(value: tuple[str, ...]) -> tuple[str, ...]:
    """A non-empty allow-list of asymmetric JWS algorithms."""
    # SECURITY: `none` and HS* (HMAC) are never accepted: with HMAC, anyone holding the
    # issuer's *public* key could mint tokens (algorithm confusion).
    if not value or not set(value) <= ASYMMETRIC_ALGORITHMS:
        raise ValueError("a non-empty list of RS*, PS*, ES* or EdDSA (never none or HS*)")
    return value


JwsAlgorithms = Annotated[tuple[str, ...], AfterValidator(check_algorithms)]
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_CLAIM = r"^[A-Za-z0-9_.:/-]{1,128}$"


def check_trusted_url(text: str) -> str:
    """An https URL (http only on loopback, for development and tests)."""
    parts = check_http_url(text)
    # SECURITY: keys and tokens fetched over plain HTTP could be swapped in transit.
    if parts.scheme != "https" and parts.hostname not in _LOOPBACK:
        raise ValueError("an https:// URL (http:// only for 127.0.0.1, ::1 or localhost)")
    return text


TrustedUrl = Annotated[str, AfterValidator(check_trusted_url)]


def _check_slug(value: str | None) -> str | None:
    if value is not None and (not is_hostname(value) or "." in value or len(value) < 2):
        raise ValueError("a tenant slug of a-z, 0-9 and '-' (2 to 63 characters)")
    return value


TenantSlug = Annotated[str, AfterValidator(_check_slug)]


class OidcJitConfig(ConfigModel):
    """Just-in-time membership: a verified email without a membership joins with `role`."""

    enabled: bool = False
    role: Literal["viewer", "editor", "admin"] = "viewer"


class OidcProviderConfig(ConfigModel):
    """One tenant's OpenID Connect provider (authorization code flow with PKCE)."""

    tenant: TenantSlug
    issuer: TrustedUrl
    client_id: str = Field(min_length=1, max_length=512)
    client_secret: SecretStr | None = None
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    algorithms: JwsAlgorithms = ("RS256", "ES256")
    email_domains: tuple[str, ...] = ()
    jit: OidcJitConfig = Field(default_factory=OidcJitConfig)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "openid" not in value or not all(is_token(s) for s in value):
            raise ValueError('a list of scope tokens including "openid"')
        return value

    @field_validator("email_domains")
    @classmethod
    def _domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not all(is_hostname(domain) for domain in value):
            raise ValueError("lower-case domain names such as example.com")
        return value


class OidcConfig(ConfigModel):
    """OIDC sign-in: one provider per tenant; a login must finish within `flow_timeout`."""

    providers: tuple[OidcProviderConfig, ...] = ()
    flow_timeout: int = Field(default=600, ge=60, le=3600)
    clock_skew: int = Field(default=60, ge=0, le=300)

    @field_validator("providers")
    @classmethod
    def _unique(cls, value: tuple[OidcProviderConfig, ...]) -> tuple[OidcProviderConfig, ...]:
        duplicate = first_duplicate([provider.tenant for provider in value])
        if duplicate is not None:
            first, again = duplicate
            expected = f"one provider per tenant (providers[{first}] has it)"
            raise problem(f"[{again}].tenant", repr(value[again].tenant), expected)
        return value


class JwtIssuerConfig(ConfigModel):
    """An external issuer of machine tokens (`Authorization: Bearer <JWT>`).

    The tenant is the fixed `tenant` or the slug in claim `tenant_claim` (exactly one);
    roles come from `roles_claim`; the principal id is `subject_prefix` + `sub`."""

    issuer: str = Field(min_length=1, max_length=512)
    jwks_url: TrustedUrl
    audiences: tuple[str, ...] = Field(min_length=1)
    algorithms: JwsAlgorithms = ("RS256", "ES256")
    tenant: TenantSlug | None = None
    tenant_claim: str | None = Field(default=None, pattern=_CLAIM)
    roles_claim: str = Field(default="roles", pattern=_CLAIM)
    subject_prefix: str | None = Field(default=None, min_length=1, max_length=128)
    clock_skew: int = Field(default=60, ge=0, le=300)

    @model_validator(mode="after")
    def _one_tenant_source(self) -> JwtIssuerConfig:
        if (self.tenant is None) == (self.tenant_claim is None):
            shown = "both" if self.tenant else "neither"
            raise problem(".tenant", shown, "exactly one of tenant or tenant_claim")
        return self


class MailConfig(ConfigModel):
    """Outgoing mail (verification and password-reset links): SMTP when `smtp_host` is set,
    else `.eml` files in `outbox_dir` (default `<state_dir>/outbox`), for development."""

    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    starttls: bool = True
    sender: str = Field(default="gateway@localhost", alias="from", min_length=3, max_length=254)
    outbox_dir: Path | None = None

    @field_validator("smtp_host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and not is_hostname(value.lower()):
            raise ValueError("a host name or IP address, without a port")
        return value

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        # SECURITY: the address goes into a mail header; no line breaks or separators.
        if "@" not in value or any(c in value for c in '\r\n,;<>"') or value.strip() != value:
            raise ValueError("one plain address such as gateway@example.com")
        return value


class MfaConfig(ConfigModel):
    """TOTP MFA. `step_up_seconds`: how recent a code must be (proven on the session at
    sign-in or with `POST /.gateway/auth/mfa`) for a cookie session of a user with MFA on to
    change anything through the admin API; 0 turns step-up off. At most one day."""

    # SECURITY: strict: `true` or `"15m"` must not silently become 1 second or an error later.
    step_up_seconds: int = Field(default=900, ge=0, le=86_400, strict=True)


class AuditConfig(ConfigModel):
    """Where audit events are also written as JSON lines for log shippers (None: nowhere).

    `-` or `stdout` writes to standard output; a path appends to that file, resuming after a
    restart without skipping or repeating events.
    """

    sink: str | None = Field(default=None, min_length=1, max_length=4096)
