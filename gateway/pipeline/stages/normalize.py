"""NormalizePath: decide on exactly the path the upstream will receive."""

from __future__ import annotations

from gateway.pipeline.paths import PathRejected, normalize_path
from gateway.pipeline.reasons import Deny, Reason
from gateway.pipeline.scope import RequestScope


class NormalizePath:
    """Sets `scope.path` to the canonical path and `scope.query` to the raw query.

    Every later decision (route, tenant prefix, public paths, policy) and the forwarded
    request use `scope.path`, so no later parser can see a different path than the policy did.
    """

    name = "NormalizePath"

    async def __call__(self, scope: RequestScope) -> Deny | None:
        raw = scope.target
        path, sep, query = raw.partition("?")
        try:
            # SECURITY: encoded slashes, dot-segment escapes and double encoding are refused
            # so that an upstream cannot resolve the path into one the policy never saw.
            scope.path = normalize_path(path)
        except PathRejected as exc:
            return Deny(Reason.BAD_PATH, f"path refused: {exc.reason}")
        scope.query = query if sep else ""
        return None
