"""A tenant's key material: its data key (wrapped by the master key) and its transform seed
(sealed by the data key). Opened per request, held only in memory.

The wrapped data key is a key set: the current 32-byte key, followed, only while a data-key
rotation re-seals the tenant's rows (``facegate keys rotate-data-key``), by the previous one.
New data is always sealed under the current key; rows not yet re-sealed open under the
previous one, so every worker keeps working through the rotation.

``dek_version`` is the version of the current key, read from the tenant's row together with the
wrapped key: whatever is sealed with these secrets is stored with it, so that a rotation knows
what was sealed under which key (never the tenant's version at write time, which a rotation may
have changed since these secrets were read)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

import numpy as np

from facegate.errors import ProtectionError
from facegate.protection.crypto import MasterKeys, open_sealed, seal
from facegate.protection.transform import protect

DEK_BYTES = 32


@dataclass(frozen=True)
class TenantSecrets:
    tenant_id: str
    dek: bytes = field(repr=False)  # key material: never in a repr, log or traceback
    seed: bytes = field(repr=False)
    transform_version: int
    previous: tuple[bytes, ...] = field(default=(), repr=False)  # during a rotation only
    dek_version: int | None = None  # of ``dek`` (None: not known, e.g. a retired key's secrets)

    def derived_key(self, label: str) -> bytes:
        """A key for one purpose (challenge tokens, capture links), derived from the data key:
        a token of one tenant is worthless in another, and nothing extra is stored."""
        return hmac.new(self.dek, f"facegate-{label}-key".encode(), hashlib.sha256).digest()

    def derived_keys(self, label: str) -> list[bytes]:
        """``derived_key`` of the current key, then (mid-rotation) of the previous one."""
        info = f"facegate-{label}-key".encode()
        return [hmac.new(k, info, hashlib.sha256).digest() for k in (self.dek, *self.previous)]

    def protect(self, embedding: np.ndarray) -> np.ndarray:
        return protect(embedding, self.seed, self.transform_version)

    def seal_vector(self, vector: np.ndarray, aad: bytes) -> bytes:
        return seal(self.dek, np.asarray(vector, "<f4").tobytes(), aad)

    def open_vector(self, blob: bytes, aad: bytes) -> np.ndarray:
        return np.frombuffer(self.open(blob, aad), dtype="<f4").copy()

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """Under the current key, else (mid-rotation) under the previous one."""
        for key in (self.dek, *self.previous):
            try:
                return open_sealed(key, blob, aad)
            except ProtectionError:
                continue
        raise ProtectionError("a protected value could not be opened")


def template_aad(tenant_id: str, subject_id: str, template_id: str, space_id: str) -> bytes:
    return "|".join(("template", tenant_id, subject_id, template_id, space_id)).encode()


def seed_aad(tenant_id: str, version: int) -> bytes:
    return f"seed|{tenant_id}|{version}".encode()


def new_tenant_material(ring: MasterKeys, tenant_id: str) -> tuple[int, bytes, bytes]:
    """(kek_version, wrapped_dek, sealed_seed) for a new tenant, transform version 1."""
    dek = secrets.token_bytes(32)
    kek_version, wrapped = ring.wrap(dek, tenant_id)
    sealed_seed = seal(dek, secrets.token_bytes(32), seed_aad(tenant_id, 1))
    return kek_version, wrapped, sealed_seed


def open_tenant(
    ring: MasterKeys,
    tenant_id: str,
    kek_version: int,
    wrapped_dek: bytes,
    sealed_seed: bytes,
    transform_version: int,
    dek_version: int | None = None,
) -> TenantSecrets:
    keys = split_keys(ring.unwrap(kek_version, wrapped_dek, tenant_id))
    seed = open_sealed(keys[0], sealed_seed, seed_aad(tenant_id, transform_version))
    return TenantSecrets(tenant_id, keys[0], seed, transform_version, tuple(keys[1:]), dek_version)


def split_keys(keyset: bytes) -> list[bytes]:
    """The data keys of an unwrapped key set, current first."""
    if not keyset or len(keyset) % DEK_BYTES:
        raise ProtectionError("a protected value could not be opened")
    return [keyset[i : i + DEK_BYTES] for i in range(0, len(keyset), DEK_BYTES)]
