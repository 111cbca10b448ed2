"""The ``fused`` embedder: MobileFaceNet and SFace in one template, scored by one cosine.

Why an embedder and not a second score: the vector is ``[w1 * e_mfn ; w2 * e_sface]`` with each
part unit-norm and ``w1^2 + w2^2 = 1``, so it is itself a unit vector and the cosine of two fused
vectors is exactly ``w1^2 * cos_mfn + w2^2 * cos_sface``: a weighted score fusion. Everything the
service does with a template (the tenant's secret orthogonal transform, which preserves inner
products; AES-GCM sealing; exact or HNSW inner-product search over one vector per template;
calibrated thresholds on one score) therefore works unchanged and exactly on fused templates.
A z-score fusion of the two cosines is the same family (a linear combination plus a constant the
threshold absorbs), so the weight sweep covers it.

The weight was chosen on the `tune` identities only (``bench/eval_embedders.py``): the lowest
FNMR@1e-3 + FNMR@1e-4 over w1^2 in 0, 0.05, ..., 1.

Both models read the same 112x112 ArcFace-aligned chip. With ``concurrent=True`` SFace runs on a
worker thread while MobileFaceNet runs on the caller's (both runtimes release the GIL), each on
``num_threads`` threads each; measured in ``bench/bench_speed.py``.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from facegate.engine.align import align_face
from facegate.engine.embed import ARCFACE_CHIP, MobileFaceNetEmbedder
from facegate.engine.sface import SFaceEmbedder
from facegate.types import FaceBox, Landmarks

# w1^2, MobileFaceNet's share of the fused cosine (SFace gets 1 - MFN_SHARE); chosen on `tune`.
MFN_SHARE = 0.30


def fuse(parts: list[np.ndarray], shares: list[float]) -> np.ndarray:
    """Concatenate unit vectors scaled by sqrt(share); shares sum to 1, so the result is unit."""
    if not math.isclose(sum(shares), 1.0, abs_tol=1e-9) or min(shares) < 0:
        raise ValueError("fusion shares must be non-negative and sum to 1")
    return np.concatenate(
        [np.sqrt(s) * p.astype(np.float64) for p, s in zip(parts, shares)]
    ).astype(np.float32)


def fused_space_id(mfn_space: str, sface_space: str, share: float) -> str:
    """Both parts' spaces and the weight: a change in any of them is a different space.

    Only ``[A-Za-z0-9_.-]``: stores use space ids in index names (storage/postgres.py)."""
    return f"fused-w{round(share * 100):02d}_{mfn_space}_{sface_space}"


class FusedEmbedder:
    """MobileFaceNet (+ its mirrored chip) and SFace on one chip, fused into one unit vector.

    Both parts come from models that are each loaded and checked as on their own, so a missing
    or altered file of either stops the load with ``ModelError`` (no half-fused templates).
    """

    name = "fused"
    chip = ARCFACE_CHIP

    def __init__(
        self, num_threads: int = 1, share: float = MFN_SHARE, concurrent: bool = True
    ) -> None:
        # Each model keeps num_threads. On these 2 cores, shared with other jobs, one chip took
        # 27.5 ms with 2 || 2 threads, 30.5 ms with the two in sequence on 2 threads each, and
        # 42.9 ms with 1 || 1 (medians, bench/bench_speed.py --arrangements). Since both models'
        # PReLU rewrites (same bits): 12.5-13.5 ms with 2 || 2, 12.9-13.3 in sequence, 16.1-16.4
        # with 1 || 1 (SFace alone on one thread: 16-17; minimums, the machine loaded). With both
        # cores busy with other jobs, 2 threads a model lose to 1 (collapsing thread pools).
        self.mfn = MobileFaceNetEmbedder(flip=True, num_threads=num_threads)
        self.sface = SFaceEmbedder(flip=False, num_threads=num_threads)
        self.shares = [share, 1.0 - share]
        self.dim = self.mfn.dim + self.sface.dim
        self.space_id = fused_space_id(self.mfn.space_id, self.sface.space_id, share)
        self.concurrent = concurrent
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0

    def align(self, rgb: np.ndarray, box: FaceBox, landmarks: Landmarks) -> np.ndarray:
        return align_face(rgb, landmarks.five, 112)

    def _worker(self) -> ThreadPoolExecutor | None:
        """The SFace thread of this process. Made on first use and again after a fork: a forked
        child inherits the executor's bookkeeping but not its thread, and would wait forever."""
        if not self.concurrent:
            return None
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="sface")
            self._pool_pid = os.getpid()
        return self._pool

    def embed_chip(self, chip: np.ndarray) -> np.ndarray:
        pool = self._worker()
        if pool is None:
            parts = [self.mfn.embed_chip(chip), self.sface.embed_chip(chip)]
        else:
            job = pool.submit(self.sface.embed_chip, chip)
            first = self.mfn.embed_chip(chip)
            parts = [first, job.result()]
        return fuse(parts, self.shares)

    def embed_chips(self, chips: list[np.ndarray]) -> list[np.ndarray]:
        """Frames of one video, without MobileFaceNet's flip (as its own ``embed_chips``)."""
        if not chips:
            return []
        pool = self._worker()
        if pool is None:
            a, b = self.mfn.embed_chips(chips), self.sface.embed_chips(chips)
        else:
            job = pool.submit(self.sface.embed_chips, chips)
            a = self.mfn.embed_chips(chips)
            b = job.result()
        return [fuse([x, y], self.shares) for x, y in zip(a, b)]

    def embed(self, rgb: np.ndarray, box: FaceBox, landmarks: Landmarks) -> np.ndarray:
        return self.embed_chip(self.align(rgb, box, landmarks))

    def parts(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """The two unit vectors a fused vector holds, by their own space id.

        Why: a deployment moving from ``mobilefacenet`` to ``fused`` keeps MobileFaceNet
        templates; the probe's MobileFaceNet part scores against them exactly (with the
        ``mobilefacenet`` calibration), so a subject can be verified, and re-enrolled in the
        fused space, without a new enrolment session.
        """
        return split_fused(
            vector,
            [(self.mfn.space_id, self.mfn.dim), (self.sface.space_id, self.sface.dim)],
            self.shares,
        )


def split_fused(
    vector: np.ndarray, layout: list[tuple[str, int]], shares: list[float]
) -> dict[str, np.ndarray]:
    """Undo ``fuse``: the unit vector of each part, keyed by space id (inverse of ``fuse``)."""
    if vector.shape != (sum(dim for _, dim in layout),):
        raise ValueError("vector does not match the fused layout")
    out: dict[str, np.ndarray] = {}
    start = 0
    for (space, dim), share in zip(layout, shares):
        part = vector[start : start + dim].astype(np.float64)
        start += dim
        if share > 0:
            out[space] = (part / np.sqrt(share)).astype(np.float32)
    return out
