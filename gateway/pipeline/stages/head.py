"""CheckRequestHead: refuse oversize or ambiguous request heads before reading anything else."""

from __future__ import annotations

from itertools import chain

from aiohttp import HttpVersion10, HttpVersion11

from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.scope import RequestScope

SUPPORTED_VERSIONS = frozenset({HttpVersion10, HttpVersion11})


class CheckRequestHead:
    """Refuses heads over the byte limit (431) and ambiguous framing or hosts (400).

    aiohttp's parser already rejects CL+TE, duplicate Content-Length, obs-fold and bad chunk
    sizes; this stage covers what it accepts but a proxy must not forward.
    """

    name = "CheckRequestHead"

    def __init__(self, max_header_bytes: int) -> None:
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: RequestScope) -> Deny | None:
        # SECURITY: only HTTP/1.0 and 1.1 are proxied; an HTTP/0.9 or "HTTP/2.0" request line
        # over HTTP/1 framing would reach the upstream as something it may parse differently.
        if scope.request.version not in SUPPORTED_VERSIONS:
            return Deny(Reason.BAD_REQUEST, "unsupported HTTP version")
        raw = scope.request.raw_headers
        size = sum(map(len, chain.from_iterable(raw))) + 4 * len(raw)  # ": " and CRLF per line
        if size > self.max_header_bytes:
            return Deny(Reason.HEADERS_TOO_LARGE)
        headers = scope.request.headers
        te = headers.getall("Transfer-Encoding", ())
        # SECURITY: only a lone "chunked" coding is unambiguous; anything else invites
        # request smuggling through an upstream that parses the framing differently.
        if te and (len(te) > 1 or te[0].strip().lower() != "chunked"):
            return Deny(Reason.BAD_FRAMING, "unsupported Transfer-Encoding")
        # SECURITY: two Host headers let the gateway and the upstream disagree on the target.
        if len(headers.getall("Host", ())) > 1:
            return Deny(Reason.BAD_REQUEST, "more than one Host header")
        return None
