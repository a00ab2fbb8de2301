"""Typed, validated configuration: `load_config()` returns an immutable `GatewayConfig` or
raises `ConfigError` listing every problem, never echoing a secret."""

from gateway.config.errors import ConfigError, Problem
from gateway.config.fields import split_host_port
from gateway.config.headers import DEFAULT_HEADER_NAMES, LOGICAL_FIELDS, OAUTH2_PROXY_HEADER_NAMES
from gateway.config.loader import (
    CONFIG_ENV,
    check_config_file,
    config_summary,
    load_config,
    problems_from,
)
from gateway.config.schema import (
    CookieConfig,
    GatewayConfig,
    HeadersConfig,
    JwtIssuerConfig,
    LimitsConfig,
    LoggingConfig,
    MetricsConfig,
    OidcConfig,
    OidcJitConfig,
    OidcProviderConfig,
    PolicyConfig,
    RateLimitMatch,
    RateLimitRule,
    RateLimitsConfig,
    RouteMatch,
    StorageConfig,
    TenancyConfig,
    Timeouts,
    TracingConfig,
    Upstream,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_HEADER_NAMES",
    "LOGICAL_FIELDS",
    "OAUTH2_PROXY_HEADER_NAMES",
    "ConfigError",
    "CookieConfig",
    "GatewayConfig",
    "HeadersConfig",
    "JwtIssuerConfig",
    "LimitsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "OidcConfig",
    "OidcJitConfig",
    "OidcProviderConfig",
    "PolicyConfig",
    "Problem",
    "RateLimitMatch",
    "RateLimitRule",
    "RateLimitsConfig",
    "RouteMatch",
    "StorageConfig",
    "TenancyConfig",
    "Timeouts",
    "TracingConfig",
    "Upstream",
    "check_config_file",
    "config_summary",
    "load_config",
    "problems_from",
    "split_host_port",
]
