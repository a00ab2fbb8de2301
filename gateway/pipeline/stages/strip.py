"""StripIdentityHeaders: the upstream never sees a client-supplied identity or credential."""

from __future__ import annotations

from multidict import CIMultiDict

from gateway.identity.authn import API_KEY_PREFIX
from gateway.pipeline.reasons import Deny
from gateway.pipeline.scope import RequestScope
from gateway.proxy.headers import (
    OwnedHeaders,
    build_upstream_request_headers,
    set_forwarded_headers,
)


def without_cookie(values: list[str], name: str) -> list[str]:
    """Cookie header values with every `name=` pair removed (empty values dropped)."""
    kept = []
    for value in values:
        pairs = [p for p in value.split(";") if p.strip().partition("=")[0].strip() != name]
        joined = ";".join(pairs).strip().strip(";").strip()
        if joined:
            kept.append(joined)
    return kept


def strip_credentials(headers: CIMultiDict[str], session_cookie: str) -> None:
    """Removes the gateway's session cookie and a `Bearer gw_…` API key from `headers`."""
    cookies = headers.getall("Cookie", [])
    if cookies:
        kept = without_cookie(cookies, session_cookie)
        del headers["Cookie"]
        for value in kept:
            headers.add("Cookie", value)
    for value in headers.getall("Authorization", []):
        scheme, _, credential = value.strip().partition(" ")
        if scheme.lower() == "bearer" and credential.strip().startswith(API_KEY_PREFIX):
            del headers["Authorization"]
            break


class StripIdentityHeaders:
    """Builds the upstream header set from the inbound one minus everything the gateway owns.

    Owned names are removed in any case and with `_` or `.` for `-`, with their duplicates,
    together with hop-by-hop headers, anything named by `Connection`, method overrides, the
    gateway's own session cookie and API keys. Forwarding headers are then set from the
    verified client address only.
    """

    name = "StripIdentityHeaders"

    def __init__(self, owned: OwnedHeaders, request_id_header: str, session_cookie: str) -> None:
        self.owned = owned
        self.request_id_header = request_id_header
        self.session_cookie = session_cookie

    async def __call__(self, scope: RequestScope) -> Deny | None:
        request = scope.request
        # SECURITY: client-supplied X-User-Id & co. would otherwise reach the upstream as truth.
        headers = build_upstream_request_headers(request.headers, self.owned)
        # SECURITY: the upstream never holds the user's session token or a raw API key.
        strip_credentials(headers, self.session_cookie)
        set_forwarded_headers(
            headers,
            client_ip=scope.client_ip,
            proto=request.scheme,
            host=scope.host,
            prior_chain=scope.forwarded_chain,
        )
        headers[self.request_id_header] = scope.request_id
        scope.upstream_headers = headers
        return None
