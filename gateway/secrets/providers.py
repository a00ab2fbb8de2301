"""Key providers: where tenants' key-encryption keys (KEKs) live.

* `LocalKeyProvider` (default): a KEK per tenant and version, derived with HKDF from the state
  directory's `master.key` (0600; the gateway refuses to start when its mode is wider). The
  KEK never exists outside memory.
* `AesKeyProvider` (BYOK): a 256-bit key-wrapping key the tenant supplied; the gateway keeps
  it only wrapped by its own master-derived key, and uses it only in memory.
* `VaultTransitProvider`: HashiCorp Vault transit (`/v1/transit/encrypt|decrypt|keys`), for
  a gateway-wide key or a tenant's own transit key (BYOK): the KEK never leaves Vault.

Every provider binds a wrapped data key to its record's associated data where it can (AES-GCM
AAD locally; Vault transit's `associated_data`), and raises `ProviderError` with no key
material or plaintext in it.
"""

from __future__ import annotations

import base64
import os
import re
from typing import Any

import aiohttp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.keyring import derive_key
from gateway.secrets.ports import KekRef, ProviderError

LOCAL = "local"
BYOK = "byok"
VAULT = "vault"
_NONCE = 12
_VAULT_CIPHERTEXT = re.compile(r"vault:v([1-9][0-9]*):[A-Za-z0-9+/=]+")
VAULT_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def gcm_wrap(key: bytes, dek: bytes, aad: bytes) -> bytes:
    """`nonce || AES-256-GCM(key, dek, aad)`: a wrapped key bound to `aad`."""
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, dek, aad)


def gcm_unwrap(key: bytes, wrapped: bytes, aad: bytes) -> bytes:
    """The key `gcm_wrap` wrapped; `ProviderError` for a wrong key, AAD or a damaged blob."""
    try:
        return AESGCM(key).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], aad)
    except (InvalidTag, ValueError):
        raise ProviderError("the data key does not unwrap with this KEK") from None


class LocalKeyProvider:
    """Tenant KEKs derived from the master key: `HKDF(master, "secrets/kek/{id}/v{n}")`."""

    kind = LOCAL

    def __init__(self, master: bytes) -> None:
        self._master = master

    def _kek(self, kek: KekRef) -> bytes:
        if kek.provider != LOCAL or kek.version < 1:
            raise ProviderError("not a local KEK")
        return derive_key(self._master, f"secrets/kek/{kek.key_id}/v{kek.version}")

    async def wrap(self, kek: KekRef, dek: bytes, aad: bytes) -> tuple[KekRef, bytes]:
        return kek, gcm_wrap(self._kek(kek), dek, aad)

    async def unwrap(self, kek: KekRef, wrapped: bytes, aad: bytes) -> bytes:
        return gcm_unwrap(self._kek(kek), wrapped, aad)

    async def rotate(self, kek: KekRef) -> KekRef:
        return KekRef(LOCAL, kek.key_id, kek.version + 1)

    def seal_material(self, tenant_id: str, key: bytes) -> bytes:
        """A tenant-supplied key, wrapped for storage under a master-derived key."""
        wrapping = derive_key(self._master, "secrets/byok-material")
        return gcm_wrap(wrapping, key, f"byok:{tenant_id}".encode())

    def open_material(self, tenant_id: str, material: bytes) -> bytes:
        """The tenant-supplied key from its stored wrapping (memory only)."""
        wrapping = derive_key(self._master, "secrets/byok-material")
        return gcm_unwrap(wrapping, material, f"byok:{tenant_id}".encode())


class AesKeyProvider:
    """A tenant-supplied 256-bit key-wrapping key (BYOK), held in memory only."""

    kind = BYOK

    def __init__(self, kek: KekRef, key: bytes) -> None:
        if len(key) != 32:
            raise ProviderError("a key-wrapping key is 32 bytes")
        self._ref = kek
        self._key = key

    def _check(self, kek: KekRef) -> None:
        if kek != self._ref:
            raise ProviderError("this data key was wrapped by another key-wrapping key")

    async def wrap(self, kek: KekRef, dek: bytes, aad: bytes) -> tuple[KekRef, bytes]:
        self._check(kek)
        return kek, gcm_wrap(self._key, dek, aad)

    async def unwrap(self, kek: KekRef, wrapped: bytes, aad: bytes) -> bytes:
        self._check(kek)
        return gcm_unwrap(self._key, wrapped, aad)

    async def rotate(self, kek: KekRef) -> KekRef:
        raise ProviderError("a supplied key is rotated by supplying a new one")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class VaultTransitProvider:
    """Vault transit over aiohttp: data keys are encrypted by a named transit key.

    The stored wrapped key is Vault's `vault:vN:...` ciphertext (so the key version travels
    with it); the token is sent only to the configured address.
    """

    kind = VAULT

    def __init__(
        self, session: aiohttp.ClientSession, address: str, token: str, mount: str = "transit"
    ) -> None:
        self._session = session
        self._base = f"{address.rstrip('/')}/v1/{mount.strip('/')}"
        self._token = token

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        headers = {"X-Vault-Token": self._token}
        try:
            async with self._session.request(
                method, f"{self._base}/{path}", json=body, headers=headers
            ) as resp:
                payload = await resp.json(content_type=None) if resp.status != 204 else {}
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ProviderError(f"vault transit unreachable ({type(exc).__name__})") from None
        if status >= 300 or not isinstance(payload, dict):
            # SECURITY: Vault's error text is not echoed: it may quote what was sent.
            raise ProviderError(f"vault transit refused the request (HTTP {status})")
        data = payload.get("data")
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _name(kek: KekRef) -> str:
        if kek.provider != VAULT or not VAULT_KEY_NAME.fullmatch(kek.key_id):
            raise ProviderError("not a vault transit key")
        return kek.key_id

    async def wrap(self, kek: KekRef, dek: bytes, aad: bytes) -> tuple[KekRef, bytes]:
        body = {"plaintext": _b64(dek), "associated_data": _b64(aad)}
        data = await self._call("POST", f"encrypt/{self._name(kek)}", body)
        ciphertext = data.get("ciphertext")
        match = _VAULT_CIPHERTEXT.fullmatch(ciphertext) if isinstance(ciphertext, str) else None
        if match is None or ciphertext is None:
            raise ProviderError("vault transit returned no ciphertext")
        return KekRef(VAULT, kek.key_id, int(match.group(1))), ciphertext.encode()

    async def unwrap(self, kek: KekRef, wrapped: bytes, aad: bytes) -> bytes:
        body = {"ciphertext": wrapped.decode("ascii", "replace"), "associated_data": _b64(aad)}
        data = await self._call("POST", f"decrypt/{self._name(kek)}", body)
        try:
            return base64.b64decode(str(data["plaintext"]), validate=True)
        except (KeyError, ValueError):
            raise ProviderError("vault transit returned no plaintext") from None

    async def rotate(self, kek: KekRef) -> KekRef:
        name = self._name(kek)
        await self._call("POST", f"keys/{name}/rotate", None)
        data = await self._call("GET", f"keys/{name}", None)
        latest = data.get("latest_version")
        if not isinstance(latest, int) or latest < 1:
            raise ProviderError("vault transit did not report the key's version")
        return KekRef(VAULT, name, latest)
