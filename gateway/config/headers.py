"""Names of the identity headers the gateway adds upstream."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.fields import ConfigModel, first_duplicate, is_token, problem

LOGICAL_FIELDS = (
    "tenant_id",
    "tenant_slug",
    "user_id",
    "user_email",
    "user_roles",
    "auth_method",
    "tenant_features",
    "assertion",
    "request_id",
    "preferred_username",
)
DEFAULT_HEADER_NAMES: dict[str, str] = {
    "tenant_id": "X-Tenant-Id",
    "tenant_slug": "X-Tenant-Slug",
    "user_id": "X-User-Id",
    "user_email": "X-User-Email",
    "user_roles": "X-User-Roles",
    "auth_method": "X-Auth-Method",
    "tenant_features": "X-Tenant-Features",
    "assertion": "X-Gateway-Assertion",
    "request_id": "X-Request-Id",
}
OAUTH2_PROXY_HEADER_NAMES: dict[str, str] = {
    **DEFAULT_HEADER_NAMES,
    "user_id": "X-Forwarded-User",
    "user_email": "X-Forwarded-Email",
    "user_roles": "X-Forwarded-Groups",
    "preferred_username": "X-Forwarded-Preferred-Username",
}
# Headers that carry transport, routing or client credentials; an identity header must not
# take their name.
_RESERVED = frozenset(
    {
        "authorization",
        "connection",
        "content-length",
        "content-type",
        "cookie",
        "host",
        "keep-alive",
        "proxy-authorization",
        "set-cookie",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-tenant",
    }
)


class HeadersConfig(ConfigModel):
    """A preset plus per-field overrides. Guarantees every name is a valid, non-reserved
    header token and no two logical fields share a header (in any letter case)."""

    preset: Literal["default", "oauth2-proxy"] = "default"
    names: dict[str, str] = Field(default_factory=dict)

    @field_validator("names")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for field, header in value.items():
            if field not in LOGICAL_FIELDS:
                expected = "one of " + ", ".join(LOGICAL_FIELDS)
                raise problem(f".{field}", "an unknown field", expected)
            # SECURITY: naming an identity header Cookie/Host/... would let the gateway
            # overwrite transport or credential headers, or be overwritten by them.
            if not is_token(header) or header.lower() in _RESERVED:
                expected = "a header name of token characters, not a hop-by-hop/credential one"
                raise problem(f".{field}", repr(header), expected)
        return value

    @model_validator(mode="after")
    def _distinct(self) -> HeadersConfig:
        resolved = self.resolved_names()
        fields = list(resolved)
        duplicate = first_duplicate([name.lower() for name in resolved.values()])
        if duplicate is not None:
            first, again = fields[duplicate[0]], fields[duplicate[1]]
            if first in self.names and again not in self.names:
                first, again = again, first
            shown = repr(resolved[again])
            raise problem(f".names.{again}", shown, f"a header not also used by {first}")
        return self

    def resolved_names(self) -> dict[str, str]:
        """The final logical field -> header name map: the preset, then `names` overrides.
        A field absent from the map is not sent."""
        base = OAUTH2_PROXY_HEADER_NAMES if self.preset == "oauth2-proxy" else DEFAULT_HEADER_NAMES
        return {**base, **self.names}
