"""StripIdentityHeaders: the upstream never sees a client-supplied identity header."""

from __future__ import annotations

from gateway.pipeline.reasons import Deny
from gateway.pipeline.scope import RequestScope
from gateway.proxy.headers import (
    OwnedHeaders,
    build_upstream_request_headers,
    set_forwarded_headers,
)


class StripIdentityHeaders:
    """Builds the upstream header set from the inbound one minus everything the gateway owns.

    Owned names are removed in any case and with `_` or `.` for `-`, with their duplicates,
    together with hop-by-hop headers, anything named by `Connection`, and method overrides.
    Forwarding headers are then set from the verified client address only.
    """

    name = "StripIdentityHeaders"

    def __init__(self, owned: OwnedHeaders, request_id_header: str) -> None:
        self.owned = owned
        self.request_id_header = request_id_header

    async def __call__(self, scope: RequestScope) -> Deny | None:
        request = scope.request
        # SECURITY: client-supplied X-User-Id & co. would otherwise reach the upstream as truth.
        headers = build_upstream_request_headers(request.headers, self.owned)
        set_forwarded_headers(
            headers,
            client_ip=scope.client_ip,
            proto=request.scheme,
            host=request.host,
            prior_chain=scope.forwarded_chain,
        )
        headers[self.request_id_header] = scope.request_id
        scope.upstream_headers = headers
        return None
