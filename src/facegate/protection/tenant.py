"""A tenant's key material: its data key (wrapped by the master key) and its transform seed
(sealed by the data key). Opened per request, held only in memory."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

import numpy as np

from facegate.protection.crypto import KeyRing, open_sealed, seal
from facegate.protection.transform import protect


@dataclass(frozen=True)
class TenantSecrets:
    tenant_id: str
    dek: bytes = field(repr=False)  # key material: never in a repr, log or traceback
    seed: bytes = field(repr=False)
    transform_version: int

    def derived_key(self, label: str) -> bytes:
        """A key for one purpose (challenge tokens, capture links), derived from the data key:
        a token of one tenant is worthless in another, and nothing extra is stored."""
        return hmac.new(self.dek, f"facegate-{label}-key".encode(), hashlib.sha256).digest()

    def protect(self, embedding: np.ndarray) -> np.ndarray:
        return protect(embedding, self.seed, self.transform_version)

    def seal_vector(self, vector: np.ndarray, aad: bytes) -> bytes:
        return seal(self.dek, np.asarray(vector, "<f4").tobytes(), aad)

    def open_vector(self, blob: bytes, aad: bytes) -> np.ndarray:
        return np.frombuffer(open_sealed(self.dek, blob, aad), dtype="<f4").copy()


def template_aad(tenant_id: str, subject_id: str, template_id: str, space_id: str) -> bytes:
    return "|".join(("template", tenant_id, subject_id, template_id, space_id)).encode()


def seed_aad(tenant_id: str, version: int) -> bytes:
    return f"seed|{tenant_id}|{version}".encode()


def new_tenant_material(ring: KeyRing, tenant_id: str) -> tuple[int, bytes, bytes]:
    """(kek_version, wrapped_dek, sealed_seed) for a new tenant, transform version 1."""
    dek = secrets.token_bytes(32)
    kek_version, wrapped = ring.wrap(dek, tenant_id)
    sealed_seed = seal(dek, secrets.token_bytes(32), seed_aad(tenant_id, 1))
    return kek_version, wrapped, sealed_seed


def open_tenant(
    ring: KeyRing,
    tenant_id: str,
    kek_version: int,
    wrapped_dek: bytes,
    sealed_seed: bytes,
    transform_version: int,
) -> TenantSecrets:
    dek = ring.unwrap(kek_version, wrapped_dek, tenant_id)
    seed = open_sealed(dek, sealed_seed, seed_aad(tenant_id, transform_version))
    return TenantSecrets(tenant_id, dek, seed, transform_version)
