"""Envelope encryption of one secret version.

Guarantees:

* every version is encrypted under its own fresh 256-bit data key (DEK) with AES-256-GCM and
  a random 96-bit nonce; a DEK encrypts exactly one message, so a (key, nonce) pair is never
  reused;
* the associated data binds the tenant id, the name and the version (`associated_data`), so a
  ciphertext copied to another tenant, name or version fails to decrypt (`EnvelopeError`);
* the DEK is stored only wrapped by the tenant's key-encryption key (KEK), through a
  `KeyProvider`, and the record names the KEK (provider, id, version) that wrapped it;
* plaintext and DEKs exist only in memory; errors never carry them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.secrets.ports import KekRef, KeyProvider
from gateway.secrets.values import MAX_SECRET_BYTES, SecretValue

FORMAT = 1
NONCE_BYTES = 12


class EnvelopeError(Exception):
    """A record cannot be opened here: wrong tenant, name or version, or a damaged record."""


@dataclass(frozen=True, slots=True)
class SealedSecret:
    """One stored secret version: only ciphertext and key metadata, never plaintext."""

    tenant_id: str
    name: str
    version: int
    kek: KekRef
    wrapped_dek: bytes
    nonce: bytes
    ciphertext: bytes
    created_at: float
    fmt: int = FORMAT


def associated_data(tenant_id: str, name: str, version: int) -> bytes:
    """The canonical AAD of a version: an unambiguous encoding of (tenant, name, version)."""
    return json.dumps(["gateway-secret", FORMAT, tenant_id, name, version]).encode()


async def seal(
    provider: KeyProvider,
    kek: KekRef,
    tenant_id: str,
    name: str,
    version: int,
    value: SecretValue,
    now: float,
) -> SealedSecret:
    """Encrypts `value` under a fresh DEK and wraps the DEK with `kek`."""
    plaintext = value.encode()
    if len(plaintext) > MAX_SECRET_BYTES:
        raise ValueError(f"a secret value is at most {MAX_SECRET_BYTES} bytes")
    aad = associated_data(tenant_id, name, version)
    dek = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(dek).encrypt(nonce, plaintext, aad)
    used, wrapped = await provider.wrap(kek, dek, aad)
    return SealedSecret(tenant_id, name, version, used, wrapped, nonce, ciphertext, now)


async def open_sealed(provider: KeyProvider, sealed: SealedSecret) -> SecretValue:
    """The plaintext of `sealed`; `EnvelopeError` if anything does not match."""
    if sealed.fmt != FORMAT or len(sealed.nonce) != NONCE_BYTES:
        raise EnvelopeError("unsupported secret record format")
    aad = associated_data(sealed.tenant_id, sealed.name, sealed.version)
    dek = await provider.unwrap(sealed.kek, sealed.wrapped_dek, aad)
    try:
        plaintext = AESGCM(dek).decrypt(sealed.nonce, sealed.ciphertext, aad)
    except (InvalidTag, ValueError):
        # SECURITY: a row moved between tenants, names or versions lands here, never decrypted.
        raise EnvelopeError(
            "secret record does not decrypt for this tenant, name and version"
        ) from None
    return SecretValue.from_bytes(plaintext)
