"""SFace and the fused embedder on real faces from ../shared/data/faces ('eval' identities, whose
pairs played no part in any threshold or weight)."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from facegate.engine.compare import operating_point
from facegate.engine.decode import decode_image
from facegate.engine.fusion import FusedEmbedder
from facegate.engine.pipeline import FaceEngine
from facegate.errors import FaceError
from facegate.eval.faces import identity_split

pytestmark = pytest.mark.data
N_IDENTITIES = 25


@pytest.fixture(scope="module")
def people(face_rows: list[dict[str, str]]) -> dict[str, list[str]]:
    by: dict[str, list[str]] = defaultdict(list)
    for row in face_rows:
        if identity_split(row["identity"]) == "eval":
            by[row["identity"]].append(row["file"])
    names = sorted(n for n, files in by.items() if len(files) >= 2)
    return {n: by[n][:3] for n in random.Random(11).sample(names, N_IDENTITIES)}


@pytest.fixture(scope="module")
def fused_engine() -> FaceEngine:
    return FaceEngine(embedder="fused")


@pytest.fixture(scope="module")
def analysed(fused_engine: FaceEngine, shared_data: Path, people: dict[str, list[str]]):
    """file -> (fused vector, MobileFaceNet vector, SFace vector) or None when refused."""
    fused = fused_engine.embedder
    assert isinstance(fused, FusedEmbedder)
    out = {}
    for files in people.values():
        for f in files:
            rgb = decode_image((shared_data / f).read_bytes())
            try:
                res = fused_engine.analyse(rgb, multiple="largest")
            except FaceError:
                out[f] = None
                continue
            chip = fused.align(rgb, res.box, res.landmarks)
            out[f] = (
                res.embedding.vector,
                fused.mfn.embed_chip(chip),
                fused.sface.embed_chip(chip),
            )
    return out


def _pairs(people, analysed):
    genuine = [
        (a, b)
        for files in people.values()
        for a, b in itertools.combinations(files, 2)
        if analysed[a] is not None and analysed[b] is not None
    ]
    firsts = [files[0] for files in people.values() if analysed[files[0]] is not None]
    return genuine, list(itertools.combinations(firsts, 2))


def test_fused_score_is_the_weighted_sum_of_both_models(fused_engine, analysed) -> None:
    w = fused_engine.embedder.shares[0]
    vecs = [v for v in analysed.values() if v is not None]
    assert len(vecs) >= 40
    for (fa, ma, sa), (fb, mb, sb) in itertools.pairwise(vecs):
        assert abs(float(fa @ fb) - (w * float(ma @ mb) + (1 - w) * float(sa @ sb))) < 1e-5


@pytest.mark.parametrize("part", ["fused", "sface"])
def test_matches_and_non_matches_at_the_shipped_threshold(
    part: str, fused_engine, people, analysed
) -> None:
    index = {"fused": 0, "sface": 2}[part]
    space = fused_engine.space_id if part == "fused" else fused_engine.embedder.sface.space_id
    threshold = operating_point(space, "fmr_1e-3").threshold
    genuine, impostor = _pairs(people, analysed)
    assert len(genuine) >= 30 and len(impostor) >= 250
    tar = np.mean([analysed[a][index] @ analysed[b][index] >= threshold for a, b in genuine])
    far = np.mean([analysed[a][index] @ analysed[b][index] >= threshold for a, b in impostor])
    assert tar >= 0.9, f"{part}: genuine match rate {tar:.3f}"
    assert far <= 0.01, f"{part}: false match rate {far:.4f}"


def test_a_fused_probe_carries_each_part_exactly(fused_engine, shared_data, people) -> None:
    """What lets MobileFaceNet templates be verified (and re-enrolled) by a fused deployment."""
    fused = fused_engine.embedder
    for files in list(people.values())[:5]:
        rgb = decode_image((shared_data / files[0]).read_bytes())
        res = fused_engine.analyse(rgb, multiple="largest", enforce_quality=False)
        by_space = fused_engine.embeddings_by_space(res.embedding)
        chip = fused.align(rgb, res.box, res.landmarks)
        assert set(by_space) == {fused.space_id, fused.mfn.space_id, fused.sface.space_id}
        np.testing.assert_allclose(
            by_space[fused.mfn.space_id].vector, fused.mfn.embed_chip(chip), atol=1e-5
        )
        np.testing.assert_allclose(
            by_space[fused.sface.space_id].vector, fused.sface.embed_chip(chip), atol=1e-5
        )


def test_fast_prelu_graph_gives_the_same_bits_as_the_original(
    fused_engine, shared_data, people
) -> None:
    """The PReLU rewrite (engine/sface.split_prelu) changes speed only: on real chips the SFace
    outputs are bit for bit the unrewritten graph's, alone and in a batch with the mirror image,
    so the embedding space and its calibration are unchanged."""
    from facegate.engine.sface import SFaceEmbedder

    fused = fused_engine.embedder
    reference = SFaceEmbedder(num_threads=1, fast_prelu=False)
    compared = 0
    for files in people.values():
        for f in files:
            rgb = decode_image((shared_data / f).read_bytes())
            try:
                res = fused_engine.analyse(rgb, multiple="largest", enforce_quality=False)
            except FaceError:
                continue
            chip = fused.align(rgb, res.box, res.landmarks)
            assert np.array_equal(fused.sface.raw([chip]), reference.raw([chip]))
            both = [chip, chip[:, ::-1]]
            assert np.array_equal(fused.sface.raw(both), reference.raw(both))
            compared += 1
    assert compared >= 40
