"""The request pipeline as data: the ordered stages every proxied request passes.

The order is the security argument, so it lives in one function and a test asserts it:
the head is vetted before anything is read, the path is normalized before any decision,
client-supplied identity is stripped before anything could trust it, the tenant and the
principal are known before the rate limit and the policy use them, and identity is injected
only after the policy allowed the request.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.pipeline.stages.base import Stage
from gateway.pipeline.stages.head import CheckRequestHead
from gateway.pipeline.stages.identity import (
    Authorize,
    CheckCsrf,
    EnforceRateLimit,
    InjectIdentity,
    LoadPrincipal,
    ResolveTenant,
)
from gateway.pipeline.stages.normalize import NormalizePath
from gateway.pipeline.stages.route import MatchRoute
from gateway.pipeline.stages.strip import StripIdentityHeaders
from gateway.proxy.headers import OwnedHeaders
from gateway.proxy.routes import RouteTable


@dataclass(frozen=True, slots=True)
class ChainParts:
    """The services the stages need, gathered by the composition root."""

    routes: RouteTable
    owned_headers: OwnedHeaders
    request_id_header: str
    max_header_bytes: int


def build_proxy_chain(parts: ChainParts) -> tuple[Stage, ...]:
    """The ordered stages of a proxied request (see the module docstring for why)."""
    return (
        CheckRequestHead(parts.max_header_bytes),
        NormalizePath(),
        StripIdentityHeaders(parts.owned_headers, parts.request_id_header),
        MatchRoute(parts.routes),
        ResolveTenant(),
        LoadPrincipal(),
        CheckCsrf(),
        EnforceRateLimit(),
        Authorize(),
        InjectIdentity(),
    )
