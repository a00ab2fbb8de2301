"""The one typed object that stages share for the life of a request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web
from multidict import CIMultiDict

from gateway.pipeline.reasons import Decision

if TYPE_CHECKING:
    from gateway.identity.principal import Principal
    from gateway.proxy.routes import Route


@dataclass(slots=True)
class RequestScope:
    """Everything the stages learn about one request, filled in chain order.

    A field is only read by stages after the one that sets it; `chain.py` fixes that order
    and a test asserts it. `path` is the normalized path: the policy decides on it and the
    upstream receives it, byte for byte.
    """

    request: web.Request
    request_id: str
    started: float
    method: str = "GET"
    host: str = ""
    target: str = "/"
    """The request's method, Host and raw target (path and query): those of the request
    itself, or, in forward-auth mode, those a trusted proxy says the original request had."""
    client_ip: str = ""
    forwarded_chain: list[str] = field(default_factory=list)
    path: str = "/"
    query: str = ""
    route: Route | None = None
    public: bool = False
    upstream_headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    tenant_slug: str | None = None
    principal: Principal | None = None
    decision: Decision | None = None
    websocket: bool = False
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    """Headers the response must carry whatever it is: a rotated session cookie, the rate
    limit fields. Added (never replacing) to the upstream's or the denial's headers."""


SCOPE_KEY = web.RequestKey("gateway_scope", RequestScope)
