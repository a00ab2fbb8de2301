"""The route table: which upstream serves a request, and which of its paths are public."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from yarl import URL

from gateway.config import Upstream
from gateway.pipeline.paths import compile_pattern


@dataclass(frozen=True, slots=True)
class Route:
    """One configured upstream with its precompiled match and public-path patterns."""

    name: str
    base_url: URL
    host: str | None
    path_prefix: str
    public_matchers: tuple[Callable[[str], bool], ...]
    max_body_bytes: int
    connect_timeout: float
    read_timeout: float
    preserve_host: bool
    upstream_prefix: str
    require_features: frozenset[str] = frozenset()

    def is_public(self, path: str) -> bool:
        """True when `path` (already normalized) matches one of the public patterns."""
        return any(match(path) for match in self.public_matchers)

    def matches_host(self, host: str) -> bool:
        """Exact host match, or a `*.domain` wildcard matching one or more labels."""
        if self.host is None:
            return True
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host

    def matches_path(self, path: str) -> bool:
        """Prefix match on whole segments: `/api` matches `/api` and `/api/x`, not `/apix`."""
        prefix = self.path_prefix
        if prefix == "/" or path == prefix:
            return True
        if prefix.endswith("/"):
            return path.startswith(prefix)
        return path.startswith(prefix + "/")


def build_route(upstream: Upstream) -> Route:
    """Precompile one configured upstream into a `Route`."""
    return Route(
        name=upstream.name,
        base_url=URL(upstream.url),
        host=upstream.match.host.lower() if upstream.match.host else None,
        path_prefix=upstream.match.path_prefix,
        public_matchers=tuple(compile_pattern(p) for p in upstream.public_paths),
        max_body_bytes=upstream.max_body_bytes,
        connect_timeout=upstream.timeouts.connect,
        read_timeout=upstream.timeouts.read,
        preserve_host=upstream.preserve_host,
        upstream_prefix=upstream_prefix(URL(upstream.url)),
        require_features=frozenset(upstream.require_features),
    )


def upstream_prefix(url: URL) -> str:
    """`scheme://authority/base-path` without a trailing slash, to which paths are appended."""
    authority = url.raw_authority
    return f"{url.scheme}://{authority}{url.raw_path.rstrip('/')}"


class RouteTable:
    """Routes ordered most specific first: host-bound before any-host, longer prefix first."""

    def __init__(self, upstreams: Sequence[Upstream]) -> None:
        routes = [build_route(u) for u in upstreams]
        routes.sort(key=lambda r: (r.host is None, -len(r.path_prefix)))
        self.routes: tuple[Route, ...] = tuple(routes)
        self.by_name = {r.name: r for r in self.routes}

    def match(self, host: str, path: str) -> Route | None:
        """The most specific route for a lower-cased host (no port) and a normalized path."""
        for route in self.routes:
            if route.matches_host(host) and route.matches_path(path):
                return route
        return None
