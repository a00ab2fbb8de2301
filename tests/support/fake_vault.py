"""A small loopback fake of HashiCorp Vault's transit secrets engine, for provider tests.

Implements, under `/v1/transit/`: `POST keys/{name}` (create), `GET keys/{name}`
(`latest_version`), `POST keys/{name}/rotate`, `POST encrypt/{name}` and `POST decrypt/{name}`
(`plaintext`/`ciphertext` base64, optional base64 `associated_data`, ciphertexts
`vault:v<N>:<base64>` under AES-256-GCM per key version). Every request needs the token
(`X-Vault-Token`), else 403; unknown keys answer 400 like Vault. `calls` records
(method, path) of every request, and `bodies` the raw request bodies, so tests can assert
what the gateway sent.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.support.net import free_port


@dataclass
class FakeVault:
    """The fake's state: transit keys (each a list of versions), the token, what arrived."""

    token: str = field(default_factory=lambda: base64.b16encode(os.urandom(8)).decode())
    keys: dict[str, list[bytes]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    url: str = ""

    def create(self, name: str) -> None:
        self.keys.setdefault(name, [AESGCM.generate_key(bit_length=256)])

    def encrypt(self, name: str, plaintext: bytes, aad: bytes | None) -> str:
        version = len(self.keys[name])
        nonce = os.urandom(12)
        sealed = AESGCM(self.keys[name][-1]).encrypt(nonce, plaintext, aad)
        return f"vault:v{version}:" + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, name: str, ciphertext: str, aad: bytes | None) -> bytes:
        _, version, blob = ciphertext.split(":", 2)
        raw = base64.b64decode(blob)
        key = self.keys[name][int(version.removeprefix("v")) - 1]
        return AESGCM(key).decrypt(raw[:12], raw[12:], aad)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"errors": [message]}, status=status)


def build_app(vault: FakeVault) -> web.Application:
    """The fake's aiohttp application."""

    @web.middleware
    async def gate(request: web.Request, handler: Any) -> web.StreamResponse:
        vault.calls.append((request.method, request.path))
        vault.bodies.append(await request.read())
        if request.headers.get("X-Vault-Token") != vault.token:
            return _error(403, "permission denied")
        try:
            response: web.StreamResponse = await handler(request)
        except (KeyError, IndexError, ValueError, InvalidTag):
            return _error(400, "invalid request")
        return response

    async def body(request: web.Request) -> dict[str, Any]:
        raw = await request.json()
        return raw if isinstance(raw, dict) else {}

    def aad(data: dict[str, Any]) -> bytes | None:
        value = data.get("associated_data")
        return base64.b64decode(value) if value else None

    async def create(request: web.Request) -> web.Response:
        vault.create(request.match_info["name"])
        return web.Response(status=204)

    async def read_key(request: web.Request) -> web.Response:
        versions = vault.keys[request.match_info["name"]]
        return web.json_response({"data": {"latest_version": len(versions)}})

    async def rotate(request: web.Request) -> web.Response:
        vault.keys[request.match_info["name"]].append(AESGCM.generate_key(bit_length=256))
        return web.json_response(
            {"data": {"latest_version": len(vault.keys[request.match_info["name"]])}}
        )

    async def encrypt(request: web.Request) -> web.Response:
        data = await body(request)
        name = request.match_info["name"]
        if name not in vault.keys:
            raise KeyError(name)
        ciphertext = vault.encrypt(name, base64.b64decode(data["plaintext"]), aad(data))
        return web.json_response({"data": {"ciphertext": ciphertext}})

    async def decrypt(request: web.Request) -> web.Response:
        data = await body(request)
        plaintext = vault.decrypt(request.match_info["name"], data["ciphertext"], aad(data))
        return web.json_response({"data": {"plaintext": base64.b64encode(plaintext).decode()}})

    app = web.Application(middlewares=[gate])
    app.router.add_post("/v1/transit/keys/{name}", create)
    app.router.add_get("/v1/transit/keys/{name}", read_key)
    app.router.add_post("/v1/transit/keys/{name}/rotate", rotate)
    app.router.add_post("/v1/transit/encrypt/{name}", encrypt)
    app.router.add_post("/v1/transit/decrypt/{name}", decrypt)
    return app


@contextlib.asynccontextmanager
async def run_fake_vault() -> AsyncIterator[FakeVault]:
    """A running fake on a free loopback port; `vault.url` is its address (`VAULT_ADDR`)."""
    vault = FakeVault()
    runner = web.AppRunner(build_app(vault))
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    vault.url = f"http://127.0.0.1:{port}"
    try:
        yield vault
    finally:
        await runner.cleanup()
