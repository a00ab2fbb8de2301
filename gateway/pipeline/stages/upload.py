"""CheckUploadType: refuse a request body whose Content-Type the route does not accept (415)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway.config.schema import Upstream
from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.scope import RequestScope

UNSUPPORTED_MEDIA_TYPE = "the request body's Content-Type is not accepted here"


def media_type(value: str) -> str | None:
    """The lower-case `type/subtype` of a Content-Type value, or None when malformed."""
    main = value.split(";", 1)[0].strip().lower()
    kind, sep, sub = main.partition("/")
    if not sep or not kind or not sub or "/" in sub or any(c.isspace() for c in main):
        return None
    return main


def allowed(media: str, ranges: Iterable[str]) -> bool:
    """True when `media` matches one of `ranges` (`type/subtype`, `type/*` or `*/*`)."""
    kind = media.split("/", 1)[0]
    return any(r in ("*/*", media) or r == f"{kind}/*" for r in ranges)


def content_types_by_route(upstreams: Iterable[Upstream]) -> dict[str, tuple[str, ...]]:
    """Each upstream's `allowed_content_types`, by route name (routes without a list absent)."""
    return {
        u.name: u.allowed_content_types for u in upstreams if u.allowed_content_types is not None
    }


class CheckUploadType:
    """Refuses (415) a body whose Content-Type is missing, malformed, repeated or outside the
    route's `allowed_content_types`. Routes without that list accept any body.

    Runs after the route is final (after ApplyTenantSettings, which may move a tenant to its
    silo upstream) and reads only the head: bodies are never buffered.
    """

    name = "CheckUploadType"

    def __init__(self, allowed_by_route: Mapping[str, tuple[str, ...]]) -> None:
        self.allowed_by_route = dict(allowed_by_route)

    async def __call__(self, scope: RequestScope) -> Deny | None:
        route = scope.route
        if route is None:
            return None
        ranges = self.allowed_by_route.get(route.name)
        if ranges is None:
            return None
        request = scope.request
        if not request.body_exists and not request.headers.get("Transfer-Encoding"):
            return None
        values = request.headers.getall("Content-Type", ())
        # SECURITY: two Content-Type headers let the gateway and the upstream each pick a
        # different one (the check passes on the first, the app parses the second).
        if len(values) != 1:
            return Deny(Reason.UNSUPPORTED_MEDIA_TYPE, UNSUPPORTED_MEDIA_TYPE)
        media = media_type(values[0])
        if media is None or not allowed(media, ranges):
            return Deny(Reason.UNSUPPORTED_MEDIA_TYPE, UNSUPPORTED_MEDIA_TYPE)
        return None
