"""Evaluation over a folder with one sub-folder per person: embed, pair, measure.

The split between tuning and evaluation is by identity, decided by a hash of the folder name,
so it is stable, needs no list, and no person is on both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from facegate.engine.pipeline import FaceEngine
from facegate.errors import FacegateError
from facegate.eval.datasets import IMAGE_SUFFIXES, SPLITS, LabelledImage, identity_split, list_faces

# the folder layout and the split are dataset knowledge (eval/datasets.py), re-exported here
__all__ = [
    "IMAGE_SUFFIXES",
    "SPLITS",
    "EmbeddedSet",
    "LabelledImage",
    "embed_images",
    "identity_split",
    "list_faces",
    "pair_scores",
]


@dataclass
class EmbeddedSet:
    vectors: np.ndarray  # (N, D) unit vectors of the images that enrolled
    identities: np.ndarray  # (N,) identity labels
    failures: dict[str, int]  # reason code -> count of images that failed to enrol
    attempted: int

    @property
    def failure_to_enrol(self) -> float:
        return sum(self.failures.values()) / max(self.attempted, 1)


def embed_images(
    engine: FaceEngine,
    images: Iterable[LabelledImage],
    *,
    enforce_quality: bool = True,
    progress: Callable[[Iterable[LabelledImage]], Iterable[LabelledImage]] | None = None,
) -> EmbeddedSet:
    items = list(images)
    vectors: list[np.ndarray] = []
    ids: list[str] = []
    failures: dict[str, int] = {}
    for item in progress(items) if progress else items:
        try:
            res = engine.analyse(
                item.path.read_bytes(), multiple="largest", enforce_quality=enforce_quality
            )
        except FacegateError as exc:
            failures[exc.code] = failures.get(exc.code, 0) + 1
            continue
        vectors.append(res.embedding.vector)
        ids.append(item.identity)
    dim = engine.embedder.dim
    return EmbeddedSet(
        np.stack(vectors) if vectors else np.zeros((0, dim), np.float32),
        np.array(ids),
        failures,
        len(items),
    )


def pair_scores(
    data: EmbeddedSet, max_impostor_pairs: int = 2_000_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """All genuine pairs; all impostor pairs up to ``max_impostor_pairs``, else a seeded sample."""
    v, ids = data.vectors.astype(np.float64), data.identities
    n = len(ids)
    iu, ju = np.triu_indices(n, 1)
    same = ids[iu] == ids[ju]
    gi, gj = iu[same], ju[same]
    genuine = np.einsum("ij,ij->i", v[gi], v[gj])
    ii, ij = iu[~same], ju[~same]
    if len(ii) > max_impostor_pairs:
        pick = np.random.default_rng(seed).choice(len(ii), max_impostor_pairs, replace=False)
        ii, ij = ii[pick], ij[pick]
    impostor = np.einsum("ij,ij->i", v[ii], v[ij])
    return genuine, impostor
