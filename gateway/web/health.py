"""Liveness and readiness endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT = 2.0


class Readiness:
    """Named readiness checks; each raises (or times out) when its dependency is not ready."""

    def __init__(self) -> None:
        self.checks: dict[str, Check] = {}
        self.advisory: set[str] = set()

    def add(self, name: str, check: Check, *, critical: bool = True) -> None:
        """Registers a check; a non-critical one is reported but never makes us unready
        (Redis: the gateway keeps serving from the database while it is down)."""
        self.checks[name] = check
        if not critical:
            self.advisory.add(name)

    def ready(self, results: dict[str, str]) -> bool:
        """True when every critical check passed."""
        return all(v == "ok" for k, v in results.items() if k not in self.advisory)

    async def run(self) -> dict[str, str]:
        """Every check's result, run concurrently, each bounded by CHECK_TIMEOUT."""
        names = list(self.checks)
        results = await asyncio.gather(
            *(asyncio.wait_for(self.checks[n](), CHECK_TIMEOUT) for n in names),
            return_exceptions=True,
        )
        # SECURITY: report only the failure class; messages may carry connection strings.
        return {
            n: "ok" if not isinstance(r, BaseException) else f"failed: {type(r).__name__}"
            for n, r in zip(names, results, strict=True)
        }


async def healthz(request: web.Request) -> web.Response:
    """200 while the process serves requests; checks nothing else."""
    return web.json_response({"status": "ok"})


def make_readyz(readiness: Readiness) -> Callable[[web.Request], Awaitable[web.Response]]:
    """200 when every check passes, else 503 with the failing checks named."""

    async def readyz(request: web.Request) -> web.Response:
        results = await readiness.run()
        ready = readiness.ready(results)
        return web.json_response(
            {"status": "ready" if ready else "not-ready", "checks": results},
            status=200 if ready else 503,
        )

    return readyz
