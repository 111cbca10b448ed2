"""Cancelable templates: a secret random orthogonal transform per tenant (pure).

The same face enrolled in two tenants gives two unrelated vectors, and renewing a tenant's
transform makes every copy taken before useless. An orthogonal matrix keeps cosine scores
exactly, so calibrated thresholds hold unchanged. Its limit: whoever holds the tenant's seed can
undo it, which is why the seed is stored only wrapped under the tenant's data key.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=64)
def _matrix(seed: bytes, version: int, dim: int) -> np.ndarray:
    material = hmac.new(
        seed, f"facegate-transform|{version}|{dim}".encode(), hashlib.sha256
    ).digest()
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(material, "big")))
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    q *= np.sign(np.diag(r))  # Haar-uniform: fix the signs QR leaves arbitrary
    q.setflags(write=False)
    return q


def orthogonal_matrix(seed: bytes, version: int, dim: int) -> np.ndarray:
    """The (dim, dim) orthogonal matrix derived from a tenant seed and a transform version."""
    return _matrix(seed, version, dim)


def protect(vector: np.ndarray, seed: bytes, version: int) -> np.ndarray:
    """Transform a unit embedding; the result is unit length too."""
    q = orthogonal_matrix(seed, version, vector.shape[-1])
    out: np.ndarray = (vector.astype(np.float64) @ q.T).astype(np.float32)
    return out


def retransform(
    protected: np.ndarray, old_seed: bytes, old_version: int, new_seed: bytes, new_version: int
) -> np.ndarray:
    """Move a protected vector to a renewed transform (Q_new Q_old^T): existing enrolments keep
    working, and copies taken under the old transform stop matching anything."""
    dim = protected.shape[-1]
    old = orthogonal_matrix(old_seed, old_version, dim)
    new = orthogonal_matrix(new_seed, new_version, dim)
    out: np.ndarray = ((protected.astype(np.float64) @ old) @ new.T).astype(np.float32)
    return out
