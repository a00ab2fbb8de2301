"""Envelope encryption: fresh data keys, AAD binding, wrapped keys, local provider KEKs."""

from __future__ import annotations

import dataclasses
import os

import pytest

from gateway.secrets.envelope import EnvelopeError, open_sealed, seal
from gateway.secrets.ports import KekRef, ProviderError
from gateway.secrets.providers import AesKeyProvider, LocalKeyProvider
from gateway.secrets.values import MAX_SECRET_BYTES, SecretValue

CANARY = "canary-envelope-51c0"
MASTER = os.urandom(32)
KEK = KekRef("local", "t_a", 1)


async def test_round_trip_and_record_metadata() -> None:
    provider = LocalKeyProvider(MASTER)
    sealed = await seal(provider, KEK, "t_a", "db", 3, SecretValue(CANARY), 10.0)
    assert sealed.kek == KEK and sealed.version == 3 and sealed.fmt == 1
    assert len(sealed.nonce) == 12
    blob = sealed.ciphertext + sealed.wrapped_dek
    assert CANARY.encode() not in blob
    assert await open_sealed(provider, sealed) == SecretValue(CANARY)


async def test_each_version_has_a_fresh_data_key_and_nonce() -> None:
    provider = LocalKeyProvider(MASTER)
    one = await seal(provider, KEK, "t_a", "db", 1, SecretValue(CANARY), 0.0)
    two = await seal(provider, KEK, "t_a", "db", 1, SecretValue(CANARY), 0.0)
    assert one.nonce != two.nonce
    assert one.ciphertext != two.ciphertext
    assert one.wrapped_dek != two.wrapped_dek


@pytest.mark.parametrize(
    "change",
    [
        {"tenant_id": "t_b", "kek": KekRef("local", "t_b", 1)},
        {"tenant_id": "t_b"},
        {"name": "other"},
        {"version": 4},
    ],
)
async def test_a_record_moved_elsewhere_does_not_decrypt(change: dict[str, object]) -> None:
    provider = LocalKeyProvider(MASTER)
    sealed = await seal(provider, KEK, "t_a", "db", 3, SecretValue(CANARY), 0.0)
    moved = dataclasses.replace(sealed, **change)  # type: ignore[arg-type]
    with pytest.raises((EnvelopeError, ProviderError)) as info:
        await open_sealed(provider, moved)
    assert CANARY not in str(info.value)


async def test_swapped_ciphertexts_between_tenants_fail_even_with_their_keys() -> None:
    provider = LocalKeyProvider(MASTER)
    a = await seal(provider, KEK, "t_a", "db", 1, SecretValue("a-value"), 0.0)
    b = await seal(provider, KekRef("local", "t_b", 1), "t_b", "db", 1, SecretValue("b"), 0.0)
    swapped = dataclasses.replace(b, ciphertext=a.ciphertext, nonce=a.nonce)
    with pytest.raises(EnvelopeError):
        await open_sealed(provider, swapped)


async def test_kek_versions_and_master_keys_differ() -> None:
    provider = LocalKeyProvider(MASTER)
    sealed = await seal(provider, KEK, "t_a", "db", 1, SecretValue(CANARY), 0.0)
    with pytest.raises(ProviderError):
        await open_sealed(provider, dataclasses.replace(sealed, kek=KekRef("local", "t_a", 2)))
    with pytest.raises(ProviderError):
        await open_sealed(LocalKeyProvider(os.urandom(32)), sealed)
    assert await provider.rotate(KEK) == KekRef("local", "t_a", 2)


async def test_supplied_key_provider_wraps_only_under_its_own_ref() -> None:
    ref = KekRef("byok", "t_a", 1)
    provider = AesKeyProvider(ref, os.urandom(32))
    sealed = await seal(provider, ref, "t_a", "db", 1, SecretValue(CANARY), 0.0)
    assert await open_sealed(provider, sealed) == SecretValue(CANARY)
    with pytest.raises(ProviderError):
        await open_sealed(AesKeyProvider(ref, os.urandom(32)), sealed)
    with pytest.raises(ProviderError):
        await provider.rotate(ref)
    with pytest.raises(ProviderError):
        AesKeyProvider(ref, b"short")


async def test_oversized_values_are_refused() -> None:
    with pytest.raises(ValueError, match="at most"):
        await seal(
            LocalKeyProvider(MASTER),
            KEK,
            "t_a",
            "x",
            1,
            SecretValue("x" * (MAX_SECRET_BYTES + 1)),
            0.0,
        )


def test_byok_material_is_stored_wrapped_and_bound_to_its_tenant() -> None:
    provider = LocalKeyProvider(MASTER)
    key = os.urandom(32)
    material = provider.seal_material("t_a", key)
    assert key not in material
    assert provider.open_material("t_a", material) == key
    with pytest.raises(ProviderError):
        provider.open_material("t_b", material)
