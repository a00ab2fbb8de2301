"""`GET /.gateway/jwks.json`: the public keys that verify the gateway's assertions."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import keys
from gateway.identity.signing_keys import KeyRing

JWKS_PATH = "/.gateway/jwks.json"
JWKS_MAX_AGE = 60
"""Seconds verifiers may cache the set; kept no longer than the default publish delay."""


def jwks_document(ring: KeyRing) -> dict[str, Any]:
    """`{"keys": [...]}`: every published key (pending, active, retiring), public parts only."""
    return {"keys": [key.public_jwk() for key in ring.published()]}


async def jwks(request: web.Request) -> web.Response:
    """The JWKS, cacheable by verifiers for JWKS_MAX_AGE seconds."""
    response = web.json_response(jwks_document(request.app[keys.SIGNING_KEYS]))
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE}"
    return response


def setup_jwks(app: web.Application) -> None:
    """Serves the ring stored under `keys.SIGNING_KEYS` at JWKS_PATH."""
    app.router.add_get(JWKS_PATH, jwks)
