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
    shown = progress(items) if progress else items
    # the next photo is read, detected and checked while this one is embedded (analyse_many)
    results = engine.analyse_many(
        (item.path.read_bytes() for item in items),
        multiple="largest",
        enforce_quality=enforce_quality,
    )
    for item, res in zip(shown, results):
        if isinstance(res, FacegateError):
            failures[res.code] = failures.get(res.code, 0) + 1
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
    # in blocks: the pairs' gathered rows for all ~280k impostor pairs at once took ~1.4 GB
    impostor = np.concatenate(
        [
            np.einsum("ij,ij->i", v[ii[k : k + PAIR_BLOCK]], v[ij[k : k + PAIR_BLOCK]])
            for k in range(0, len(ii), PAIR_BLOCK)
        ]
        or [np.zeros(0)]
    )
    return genuine, impostor


PAIR_BLOCK = 8192  # impostor pairs scored per block (each block's rows: 2 x 8192 x D float64)
