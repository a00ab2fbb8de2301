"""VerifyWebhook: a route declaring `verify_webhook` forwards only authentically signed bodies.

Guarantees: for such a route the body is read in full (at most `min(route limit,
MAX_WEBHOOK_BODY)` bytes, else 413) before anything is forwarded, verified against the
tenant's signing secret (see `gateway.secrets.webhooks`: constant-time, timestamped, replay
window), and refused with 401 on any failure, including a tenant or secret that cannot be
found; the verified body is then forwarded byte for byte. Routes without it are untouched.
Runs after `Authorize` (policy and rate limits come before reading a body).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiohttp import StreamReader, web

from gateway.config import Upstream
from gateway.config.routes import WebhookVerification
from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.scope import RequestScope
from gateway.secrets.runtime import SecretsRuntime
from gateway.secrets.webhooks import WebhookRequest
from gateway.storage.ports import StoreUnavailable
from gateway.web.common import request_context

MAX_WEBHOOK_BODY = 1024 * 1024


class BodyTooLarge(Exception):
    """The body passed the webhook limit."""


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole request body, or BodyTooLarge past `limit` bytes (never buffered beyond)."""
    if (request.content_length or 0) > limit:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body.extend(chunk)
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


def replay_body(request: web.Request, body: bytes) -> None:
    """Makes `request.content` yield `body` again, for the forwarder after verification."""
    reader = StreamReader(request.protocol, max(len(body), 2**16), loop=asyncio.get_running_loop())
    if body:
        reader.feed_data(body)
    reader.feed_eof()
    # aiohttp offers no public way to re-supply a read body: replace the payload and the
    # cached `content` property (a reify) so every later reader sees the verified bytes.
    request._payload = reader
    request._cache["content"] = reader


class VerifyWebhook:
    """Refuses (401) webhook requests whose signature is missing, wrong, stale or replayed."""

    name = "VerifyWebhook"

    def __init__(self, upstreams: Sequence[Upstream], runtime: SecretsRuntime) -> None:
        self.specs = {u.name: u.verify_webhook for u in upstreams if u.verify_webhook}
        self.runtime = runtime

    async def __call__(self, scope: RequestScope) -> Deny | None:
        route = scope.route
        spec = self.specs.get(route.name) if route is not None else None
        if route is None or spec is None:
            return None
        verifier = self.runtime.webhooks
        if verifier is None:
            return Deny(Reason.STORE_UNAVAILABLE)
        try:
            body = await read_body(scope.request, min(route.max_body_bytes, MAX_WEBHOOK_BODY))
            reason = await verifier.verify(spec, self._request(scope, spec, body))
        except BodyTooLarge:
            return Deny(Reason.BODY_TOO_LARGE)
        except StoreUnavailable:
            return Deny(Reason.STORE_UNAVAILABLE)
        # SECURITY: only a verified, fresh, first-seen signature reaches the upstream.
        if reason != "ok":
            return Deny(Reason.UNAUTHENTICATED, "the webhook signature is missing or invalid")
        if scope.request.body_exists:
            replay_body(scope.request, body)
        return None

    @staticmethod
    def _request(scope: RequestScope, spec: WebhookVerification, body: bytes) -> WebhookRequest:
        principal = scope.principal
        tenant = principal.tenant.id if principal is not None else scope.tenant_slug
        route = scope.route.name if scope.route is not None else ""
        header = scope.request.headers.get(spec.header)
        return WebhookRequest(route, tenant, header, body, request_context(scope))
