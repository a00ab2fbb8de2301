"""MatchRoute: pick the upstream, mark public paths, vet upgrades and declared body sizes."""

from __future__ import annotations

from gateway.pipeline.memo import MEMO_MAX_KEY, pure_memo
from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.scope import RequestScope
from gateway.proxy.headers import upgrade_protocol
from gateway.proxy.routes import Route, RouteTable

RESERVED_PREFIX = "/.gateway/"


def request_hostname(host: str) -> str:
    """The Host header without its port, lower-cased (keeps IPv6 brackets)."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class MatchRoute:
    """Assigns `scope.route` and `scope.public`; refuses what no route or upgrade allows.

    With a `fallback` (forward-auth mode), a request no configured route matches is decided
    as a protected request of that route rather than refused.
    """

    name = "MatchRoute"

    def __init__(self, table: RouteTable, fallback: Route | None = None) -> None:
        self.table = table
        self.fallback = fallback
        # The table and fallback are fixed for this instance, so the lookup is pure.
        self._memo = pure_memo(self._lookup)

    def _lookup(self, host: str, path: str) -> tuple[Route | None, bool]:
        """The route for a raw Host value and a normalized path, and whether it is public."""
        route = self.table.match(request_hostname(host), path) or self.fallback
        return route, route is not None and route.is_public(path)

    async def __call__(self, scope: RequestScope) -> Deny | None:
        path = scope.path
        # SECURITY: a path that only becomes /.gateway/... after normalization must not be
        # proxied: the upstream would otherwise receive requests meant for the gateway itself.
        if path.startswith(RESERVED_PREFIX) or path == RESERVED_PREFIX[:-1]:
            return Deny(Reason.ROUTE_UNKNOWN)
        request = scope.request
        host = scope.host
        lookup = self._memo if len(host) + len(path) <= MEMO_MAX_KEY else self._lookup
        route, public = lookup(host, path)
        if route is None:
            return Deny(Reason.ROUTE_UNKNOWN)
        scope.route = route
        scope.public = public
        deny = self._check_upgrade(scope)
        if deny is not None:
            return deny
        length = request.content_length
        if length is not None and length > route.max_body_bytes:
            return Deny(Reason.BODY_TOO_LARGE)
        return None

    @staticmethod
    def _check_upgrade(scope: RequestScope) -> Deny | None:
        protocol = upgrade_protocol(scope.request.headers)
        if protocol is None:
            return None
        # SECURITY: only WebSocket over GET is tunnelled; h2c and other upgrades would let a
        # client speak a protocol to the upstream that the gateway no longer inspects.
        if protocol != "websocket" or scope.method != "GET":
            return Deny(Reason.UPGRADE_REFUSED)
        scope.websocket = True
        return None
