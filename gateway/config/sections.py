"""Configuration sections other than upstreams and headers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from gateway.config.fields import (
    ConfigModel,
    check_host_port,
    check_http_url,
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


class PolicyConfig(ConfigModel):
    """Casbin model and rules files; None means the packaged policy/model.conf and
    policy/policy.csv."""

    model: Path | None = None
    rules: Path | None = None


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
