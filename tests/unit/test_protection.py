"""Template protection primitives: sealing, key ring, transforms, tokens, D_sys."""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import pytest

from facegate.errors import ConfigError
from facegate.protection.crypto import ProtectionError, load_keyring, open_sealed, seal
from facegate.protection.metrics import d_sys
from facegate.protection.tokens import open_token, sign_token
from facegate.protection.transform import orthogonal_matrix, protect, retransform


def unit(rng: np.random.Generator, d: int = 192) -> np.ndarray:
    v = rng.standard_normal(d)
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_seal_binds_its_associated_data() -> None:
    key = secrets.token_bytes(32)
    blob = seal(key, b"template", b"tenant|subject|t1")
    assert open_sealed(key, blob, b"tenant|subject|t1") == b"template"
    for bad_key, aad in (
        (key, b"tenant|other|t1"),
        (secrets.token_bytes(32), b"tenant|subject|t1"),
    ):
        with pytest.raises(ProtectionError):
            open_sealed(bad_key, blob, aad)
    with pytest.raises(ProtectionError):
        open_sealed(key, blob[:-1] + bytes([blob[-1] ^ 1]), b"tenant|subject|t1")


def test_key_ring_file_rotation(tmp_path: Path) -> None:
    ring = load_keyring(tmp_path / "k" / "master.keys")
    version, wrapped = ring.wrap(b"d" * 32, "t1")
    ring.add_version()
    again = load_keyring(tmp_path / "k" / "master.keys")
    assert again.current == version + 1
    assert again.unwrap(version, wrapped, "t1") == b"d" * 32
    assert oct((tmp_path / "k" / "master.keys").stat().st_mode & 0o777) == "0o600"


def test_key_ring_from_environment(tmp_path) -> None:
    ring = load_keyring(tmp_path / "unused", f"2:{'ab' * 32},1:{'cd' * 32}")
    assert ring.current == 2 and set(ring.keys) == {1, 2}
    assert not (tmp_path / "unused").exists()
    with pytest.raises(ConfigError):
        ring.add_version()  # rotation is the operator's: put the new key first
    with pytest.raises(ConfigError):
        load_keyring(tmp_path / "unused", "1:abcd")


def test_transform_keeps_scores_and_unlinks_tenants() -> None:
    rng = np.random.default_rng(0)
    seed_a, seed_b = secrets.token_bytes(32), secrets.token_bytes(32)
    q = orthogonal_matrix(seed_a, 1, 192)
    assert np.allclose(q @ q.T, np.eye(192), atol=1e-10)
    x, y = unit(rng), unit(rng)
    assert float(protect(x, seed_a, 1) @ protect(y, seed_a, 1)) == pytest.approx(
        float(x @ y), abs=1e-5
    )
    # the same face in two tenants: unrelated vectors
    assert abs(float(protect(x, seed_a, 1) @ protect(x, seed_b, 1))) < 0.35
    assert abs(float(protect(x, seed_a, 1) @ x)) < 0.35
    # renewal moves stored templates without the plain embedding
    moved = retransform(protect(x, seed_a, 1), seed_a, 1, seed_b, 2)
    assert np.allclose(moved, protect(x, seed_b, 2), atol=1e-5)


def test_tokens() -> None:
    key = secrets.token_bytes(32)
    token = sign_token(key, "purpose-a", {"x": 1})
    assert open_token(key, "purpose-a", token) == {"x": 1}
    for bad in (
        lambda: open_token(key, "purpose-b", token),
        lambda: open_token(secrets.token_bytes(32), "purpose-a", token),
        lambda: open_token(key, "purpose-a", token + "x"),
        lambda: open_token(key, "purpose-a", "nonsense"),
    ):
        with pytest.raises(ValueError):
            bad()


def test_d_sys_bounds() -> None:
    rng = np.random.default_rng(0)
    non_mated = rng.normal(0, 0.1, 20_000)
    assert d_sys(rng.normal(0.9, 0.05, 500), non_mated) > 0.95
    assert d_sys(rng.normal(0, 0.1, 500), non_mated) < 0.1
