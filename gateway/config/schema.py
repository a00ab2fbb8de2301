"""The gateway's configuration: `GatewayConfig` and every section model.

An instance is immutable and fully validated: every address parses, every URL has the
right scheme, upstream names are unique and no two listeners collide.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, SecretStr, ValidationInfo, field_validator

from gateway.config.fields import (
    ConfigModel,
    check_http_url,
    first_duplicate,
    origin_of,
    parse_network,
    problem,
    split_host_port,
)
from gateway.config.headers import HeadersConfig
from gateway.config.routes import (
    RateLimitMatch,
    RateLimitRule,
    RouteMatch,
    Timeouts,
    Upstream,
    UpstreamTls,
)
from gateway.config.sections import (
    AuditConfig,
    CookieConfig,
    ForwardAuthConfig,
    HostPort,
    JwtIssuerConfig,
    LimitsConfig,
    LoggingConfig,
    MailConfig,
    MetricsConfig,
    MfaConfig,
    OidcConfig,
    OidcJitConfig,
    OidcProviderConfig,
    PolicyConfig,
    RateLimitsConfig,
    StorageConfig,
    TenancyConfig,
    TlsConfig,
    TracingConfig,
)

__all__ = [
    "CookieConfig",
    "GatewayConfig",
    "HeadersConfig",
    "JwtIssuerConfig",
    "LimitsConfig",
    "LoggingConfig",
    "MailConfig",
    "MetricsConfig",
    "MfaConfig",
    "OidcConfig",
    "OidcJitConfig",
    "OidcProviderConfig",
    "PolicyConfig",
    "RateLimitMatch",
    "RateLimitRule",
    "RateLimitsConfig",
    "RouteMatch",
    "StorageConfig",
    "TenancyConfig",
    "Timeouts",
    "TlsConfig",
    "TracingConfig",
    "Upstream",
    "UpstreamTls",
]

Network = Annotated[IPv4Network | IPv6Network, BeforeValidator(parse_network)]
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - names, not a bind


def _split_csv(value: object) -> object:
    """Accept "10.0.0.0/8, 192.168.0.0/16" (handy in environment variables) as a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class GatewayConfig(ConfigModel):
    """The whole configuration; see config/gateway.example.yaml for every key."""

    listen: HostPort = "127.0.0.1:8080"
    public_url: str | None = None
    state_dir: Path = Path(".gateway")
    database_url: SecretStr | None = None
    redis_url: SecretStr | None = None
    auto_migrate: bool = False
    storage: StorageConfig = Field(default_factory=StorageConfig)
    trusted_proxies: Annotated[tuple[Network, ...], BeforeValidator(_split_csv)] = ()
    workers: int = Field(default=1, ge=1, le=64)
    upstreams: tuple[Upstream, ...] = ()
    cookie: CookieConfig = Field(default_factory=CookieConfig)
    tenancy: TenancyConfig = Field(default_factory=TenancyConfig)
    rate_limits: RateLimitsConfig = Field(default_factory=RateLimitsConfig)
    headers: HeadersConfig = Field(default_factory=HeadersConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    mail: MailConfig = Field(default_factory=MailConfig)
    mfa: MfaConfig = Field(default_factory=MfaConfig)
    oidc: OidcConfig = Field(default_factory=OidcConfig)
    jwt_issuers: tuple[JwtIssuerConfig, ...] = ()
    tls: TlsConfig = Field(default_factory=TlsConfig)
    forward_auth: ForwardAuthConfig = Field(default_factory=ForwardAuthConfig)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_http_url(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("a postgresql:// or postgres:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        schemes = ("redis://", "rediss://", "unix://")
        if value is not None and not value.get_secret_value().startswith(schemes):
            raise ValueError("a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("upstreams")
    @classmethod
    def _unique_upstreams(cls, value: tuple[Upstream, ...]) -> tuple[Upstream, ...]:
        duplicate = first_duplicate([upstream.name for upstream in value])
        if duplicate is not None:
            first, again = duplicate
            expected = f"a unique upstream name (upstreams[{first}] has it)"
            raise problem(f"[{again}].name", repr(value[again].name), expected)
        routes = [f"{u.match.host}\0{u.match.path_prefix}" for u in value]
        duplicate = first_duplicate(routes)
        if duplicate is not None:
            first, again = duplicate
            shown = "the same host and path_prefix"
            raise problem(f"[{again}].match", shown, f"a match unlike upstreams[{first}]")
        return value

    @field_validator("jwt_issuers")
    @classmethod
    def _unique_issuers(cls, value: tuple[JwtIssuerConfig, ...]) -> tuple[JwtIssuerConfig, ...]:
        duplicate = first_duplicate([issuer.issuer for issuer in value])
        if duplicate is not None:
            first, again = duplicate
            expected = f"a unique issuer (jwt_issuers[{first}] has it)"
            raise problem(f"[{again}].issuer", repr(value[again].issuer), expected)
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics_apart(cls, value: MetricsConfig, info: ValidationInfo) -> MetricsConfig:
        listen = info.data.get("listen")
        if value.listen is None or listen is None:
            return value
        host, port = split_host_port(value.listen)
        main_host, main_port = split_host_port(listen)
        overlap = host == main_host or {host, main_host} & _WILDCARD_HOSTS
        if port != 0 and port == main_port and overlap:
            expected = "an address different from listen (or port 0)"
            raise problem(".listen", repr(value.listen), expected)
        return value

    @property
    def public_origin(self) -> str | None:
        """`scheme://host[:port]` of `public_url` (default port omitted), or None."""
        if self.public_url is None:
            return None
        return origin_of(check_http_url(self.public_url))

    @property
    def listen_address(self) -> tuple[str, int]:
        """(host, port) of the main listener, IPv6 without brackets."""
        return split_host_port(self.listen)
