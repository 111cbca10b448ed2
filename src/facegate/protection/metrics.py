"""Template-protection metrics (pure).

Unlinkability D_sys (Gomez-Barrero et al., IEEE TIFS 2018): from linkage scores of mated pairs
(the same person's templates in two systems) and non-mated pairs, D_sys = the integral of
D(s) * p(s | mated), where D(s) = 2 * w * LR(s) / (1 + w * LR(s)) - 1 when w * LR(s) > 1, else 0,
LR(s) = p(s | mated) / p(s | non-mated), and w the ratio of mated to non-mated priors (1 here).
0 means fully unlinkable, 1 fully linkable.
"""

from __future__ import annotations

import numpy as np


def d_sys(
    mated: np.ndarray, non_mated: np.ndarray, bins: int | None = None, omega: float = 1.0
) -> float:
    """Histogram estimate; by default sqrt(#mated) bins (10 to 100), as small samples need."""
    bins = bins or int(np.clip(np.sqrt(len(mated)), 10, 100))
    lo = float(min(mated.min(), non_mated.min()))
    hi = float(max(mated.max(), non_mated.max()))
    if hi <= lo:
        return 0.0
    edges = np.linspace(lo, hi, bins + 1)
    p_m, _ = np.histogram(mated, bins=edges, density=True)
    p_n, _ = np.histogram(non_mated, bins=edges, density=True)
    width = edges[1] - edges[0]
    lr = np.divide(p_m, p_n, out=np.full_like(p_m, np.inf), where=p_n > 0)
    with np.errstate(invalid="ignore"):
        local = np.where(omega * lr > 1, 2 * omega * lr / (1 + omega * lr) - 1, 0.0)
    local = np.nan_to_num(local, nan=1.0, posinf=1.0)
    local = np.where(np.isinf(lr), 1.0, local)
    return float(np.sum(local * p_m * width))


def procrustes_attack(known_plain: np.ndarray, known_protected: np.ndarray) -> np.ndarray:
    """The known-pair attack on a linear transform: from N (plain, protected) pairs of faces the
    attacker enrolled itself, the orthogonal matrix R minimising ||X R^T - Y|| (orthogonal
    Procrustes: R = U V^T from the SVD of Y^T X). With N below the dimension R is right on the
    span of the known faces only, which is where faces live; ``bench/bench_procrustes.py``
    measures how far that goes."""
    m = known_protected.astype(np.float64).T @ known_plain.astype(np.float64)
    u, _, vt = np.linalg.svd(m)
    r: np.ndarray = u @ vt
    return r


def identification_rate(
    r: np.ndarray,
    probes_plain: np.ndarray,
    gallery_protected: np.ndarray,
    threshold: float,
) -> float:
    """Share of victims whose plain probe (another photo), moved by the estimated transform,
    finds their own protected template first and above the match threshold (row i of the probes
    belongs to row i of the gallery)."""
    if len(probes_plain) == 0:
        return 0.0
    scores = (probes_plain.astype(np.float64) @ r.T) @ gallery_protected.astype(np.float64).T
    best = scores.argmax(axis=1)
    hit = (best == np.arange(len(scores))) & (scores.max(axis=1) >= threshold)
    return float(hit.mean())
