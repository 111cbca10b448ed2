"""Fusion math (synthetic vectors), the embedder registry, its calibration files, and no fallback
when weights are missing."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from facegate.engine.compare import load_calibration
from facegate.engine.embed import DEFAULT, DEFAULT_EMBEDDER, EMBEDDERS, load_embedder
from facegate.engine.fusion import MFN_SHARE, fuse, fused_space_id
from facegate.errors import ModelError


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("share", [0.0, 0.3, 0.5, 1.0])
def test_fused_cosine_is_the_weighted_score(share: float) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        a1, b1 = _unit(rng, 192), _unit(rng, 192)
        a2, b2 = _unit(rng, 128), _unit(rng, 128)
        fa = fuse([a1, a2], [share, 1 - share])
        fb = fuse([b1, b2], [share, 1 - share])
        assert fa.shape == (320,)
        assert abs(np.linalg.norm(fa) - 1) < 1e-6
        want = share * a1 @ b1 + (1 - share) * a2 @ b2
        assert abs(float(fa @ fb) - want) < 1e-6


def test_fused_score_survives_the_tenant_transform() -> None:
    """The service multiplies templates by a secret orthogonal matrix: scores must not move."""
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((320, 320)))
    fa = fuse([_unit(rng, 192), _unit(rng, 128)], [MFN_SHARE, 1 - MFN_SHARE])
    fb = fuse([_unit(rng, 192), _unit(rng, 128)], [MFN_SHARE, 1 - MFN_SHARE])
    assert abs(float((q @ fa) @ (q @ fb)) - float(fa @ fb)) < 1e-5


def test_bad_shares_are_refused() -> None:
    v = np.ones(4) / 2
    with pytest.raises(ValueError):
        fuse([v, v], [0.5, 0.6])
    with pytest.raises(ValueError):
        fuse([v, v], [-0.2, 1.2])


def test_space_id_names_both_parts_and_the_weight() -> None:
    sid = fused_space_id("mfn-a", "sface-b", 0.3)
    assert sid == "fused-w30_mfn-a_sface-b"
    assert re.fullmatch(r"[A-Za-z0-9_.-]{1,120}", sid)  # what stores accept
    assert fused_space_id("mfn-a", "sface-b", 0.35) != sid


def test_default_is_a_registered_constant() -> None:
    assert DEFAULT_EMBEDDER in EMBEDDERS
    assert {"mobilefacenet", "dlib", "sface", "fused"} <= set(EMBEDDERS)


@pytest.mark.parametrize("name", sorted(EMBEDDERS))
def test_every_embedder_ships_a_calibration(name: str) -> None:
    embedder = load_embedder(name)
    assert re.fullmatch(r"[A-Za-z0-9_.-]{1,120}", embedder.space_id)
    calibration = load_calibration(embedder.space_id)
    assert calibration["space_id"] == embedder.space_id
    assert calibration["data"]["split"] == "tune"
    points = calibration["operating_points"]
    assert {"fmr_1e-2", "fmr_1e-3", "fmr_1e-4"} <= set(points)
    thresholds = [points[k]["threshold"] for k in ("fmr_1e-2", "fmr_1e-3", "fmr_1e-4")]
    assert thresholds == sorted(thresholds)
    vec = embedder.embed_chip(np.full((112, 112, 3), 128, np.uint8)) if name != "dlib" else None
    if vec is not None:
        assert vec.shape == (embedder.dim,) and abs(np.linalg.norm(vec) - 1) < 1e-5


@pytest.mark.parametrize("name", ["mobilefacenet", "fused", DEFAULT])
def test_missing_weights_raise_instead_of_falling_back(
    name: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("FACEGATE_MODELS_DIR", str(tmp_path))  # no MobileFaceNet here
    if name == DEFAULT and DEFAULT_EMBEDDER in ("sface", "dlib"):
        pytest.skip("the default does not use MobileFaceNet")
    with pytest.raises(ModelError) as info:
        load_embedder(name)
    assert info.value.code == "model_missing"


def test_split_undoes_fuse() -> None:
    from facegate.engine.fusion import split_fused

    rng = np.random.default_rng(2)
    a, b = _unit(rng, 192), _unit(rng, 128)
    parts = split_fused(fuse([a, b], [0.3, 0.7]), [("m", 192), ("s", 128)], [0.3, 0.7])
    np.testing.assert_allclose(parts["m"], a, atol=1e-6)
    np.testing.assert_allclose(parts["s"], b, atol=1e-6)
    with pytest.raises(ValueError):
        split_fused(np.ones(10), [("m", 192), ("s", 128)], [0.3, 0.7])


_FORKED: dict[str, object] = {}


def _embed_in_child(chip: np.ndarray) -> np.ndarray:
    return _FORKED["embedder"].embed_chip(chip)  # type: ignore[attr-defined]


def test_fused_embedder_survives_a_fork() -> None:
    """A worker process forked after the parent embedded once must not wait on a missing thread."""
    import multiprocessing as mp

    from facegate.engine.fusion import FusedEmbedder

    embedder = FusedEmbedder()
    chip = np.full((112, 112, 3), 100, np.uint8)
    first = embedder.embed_chip(chip)
    _FORKED["embedder"] = embedder  # inherited by the forked child, not pickled
    with mp.get_context("fork").Pool(1) as pool:
        again = pool.apply_async(_embed_in_child, (chip,)).get(timeout=60)
    np.testing.assert_allclose(again, first, atol=1e-5)
    sequential = FusedEmbedder(concurrent=False).embed_chip(chip)
    np.testing.assert_allclose(sequential, first, atol=1e-5)
