"""Outbound HTTP for identity providers, and a JWKS cache that never blocks the event loop.

`JwksCache` fetches a JSON Web Key Set with aiohttp (pyjwt's `PyJWKClient` would block the
loop on urllib), keeps it for `refresh_interval` seconds, and on an unknown `kid` refetches
at most once per `min_refetch_interval` seconds, so key rotation is picked up quickly while a
flood of tokens with made-up key ids cannot turn the gateway into a request amplifier.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from gateway.config.sections import ASYMMETRIC_ALGORITHMS

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 256 * 1024
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=5)
Clock = Callable[[], float]


class FetchError(Exception):
    """A provider endpoint could not be reached or answered something unusable."""


class OutboundHttp:
    """One lazily opened aiohttp session for talking to identity providers."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=FETCH_TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def get_json(self, url: str) -> dict[str, Any]:
        """The JSON object at `url`; FetchError for anything else."""
        return await self.request_json("GET", url)

    async def request_json(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """A bounded JSON object answer (2xx) to one request; FetchError otherwise."""
        try:
            async with self.session().request(method, url, allow_redirects=False, **kwargs) as resp:
                body = await resp.content.read(MAX_DOCUMENT_BYTES + 1)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FetchError(f"{method} {url}: {type(exc).__name__}") from None
        if not 200 <= status < 300 or len(body) > MAX_DOCUMENT_BYTES:
            raise FetchError(f"{method} {url}: status {status}, {len(body)} bytes")
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise FetchError(f"{method} {url}: not JSON") from None
        if not isinstance(document, dict):
            raise FetchError(f"{method} {url}: not a JSON object")
        return document


def select_key(keys: list[Mapping[str, Any]], kid: str | None, alg: str) -> PyJWK | None:
    """The signing key for a token's `kid` and `alg`, only if the key fits that algorithm."""
    # SECURITY: only asymmetric algorithms; a JWK can never be used as an HMAC secret.
    if alg not in ASYMMETRIC_ALGORITHMS:
        return None
    candidates = [k for k in keys if kid is None or k.get("kid") == kid]
    if kid is None and len(candidates) != 1:
        return None  # without a kid only a single-key set is unambiguous
    for jwk in candidates:
        if jwk.get("kty") == "oct" or jwk.get("use", "sig") != "sig":
            continue
        if jwk.get("alg", alg) != alg:
            continue
        try:
            # SECURITY: building the key for `alg` fails when its type does not match (an EC
            # key presented for RS256, for instance), so the token cannot pick the key type.
            return PyJWK(dict(jwk), algorithm=alg)
        except (PyJWTError, ValueError, TypeError):
            continue
    return None


class JwksCache:
    """The key set at one URL, cached, refreshed, and refetched on unknown key ids."""

    def __init__(
        self,
        url: str,
        http: OutboundHttp,
        *,
        clock: Clock = time.monotonic,
        refresh_interval: float = 300.0,
        min_refetch_interval: float = 30.0,
        max_stale: float = 3600.0,
    ) -> None:
        self.url = url
        self._http = http
        self._clock = clock
        self._refresh_interval = refresh_interval
        self._min_refetch = min_refetch_interval
        self._max_stale = max_stale
        self._keys: list[Mapping[str, Any]] = []
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str | None, alg: str) -> PyJWK | None:
        """The key for (`kid`, `alg`), or None when the set has no such usable key."""
        now = self._clock()
        old = self._fetched_at is None or now - self._fetched_at >= self._refresh_interval
        if old and self._may_refetch(now):
            await self._refresh(now)
        found = select_key(self._keys, kid, alg)
        if found is None and self._may_refetch(self._clock()):
            await self._refresh(self._clock())
            found = select_key(self._keys, kid, alg)
        return found

    def _may_refetch(self, now: float) -> bool:
        # SECURITY: unknown key ids are attacker-chosen; refetch at most once per interval.
        return self._attempted_at is None or now - self._attempted_at >= self._min_refetch

    async def _refresh(self, requested_at: float) -> None:
        async with self._lock:
            if self._attempted_at is not None and self._attempted_at >= requested_at:
                return  # another request refreshed while this one waited
            self._attempted_at = self._clock()
            try:
                keys = await self._fetch()
            except FetchError as exc:
                log.warning("jwks fetch failed: %s", exc)
                self._expire_stale()
                return
            self._keys, self._fetched_at = keys, self._attempted_at

    async def _fetch(self) -> list[Mapping[str, Any]]:
        self.fetches += 1
        document = await self._http.get_json(self.url)
        keys = document.get("keys")
        if not isinstance(keys, list):
            raise FetchError(f"{self.url}: no keys array")
        return [key for key in keys if isinstance(key, dict)]

    def _expire_stale(self) -> None:
        """Keeps serving a recent set through an outage, then fails closed."""
        if self._fetched_at is not None and self._clock() - self._fetched_at > self._max_stale:
            self._keys, self._fetched_at = [], None
