"""Verification error rates from genuine and impostor scores (pure; higher score = more alike)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FMR_TARGETS = {"1e-2": 1e-2, "1e-3": 1e-3, "1e-4": 1e-4}


def threshold_at_fmr(impostor: np.ndarray, fmr: float) -> float:
    """Smallest threshold whose false-match rate (score >= threshold) is at most ``fmr``."""
    imp = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
    allowed = int(np.floor(fmr * len(imp)))  # impostor scores allowed at or above the threshold
    if allowed >= len(imp):
        return float(imp[-1])
    # the threshold sits just above the (allowed+1)-th highest impostor score
    return float(np.nextafter(imp[allowed], np.inf))


def fmr_fnmr(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float]:
    fmr = float(np.mean(np.asarray(impostor) >= threshold)) if len(impostor) else 0.0
    fnmr = float(np.mean(np.asarray(genuine) < threshold)) if len(genuine) else 0.0
    return fmr, fnmr


def det_curve(
    genuine: np.ndarray, impostor: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, fmr, fnmr) over every distinct score, thresholds ascending."""
    g = np.sort(np.asarray(genuine, dtype=np.float64))
    i = np.sort(np.asarray(impostor, dtype=np.float64))
    thresholds = np.unique(np.concatenate([g, i]))
    fnmr = np.searchsorted(g, thresholds, side="left") / max(len(g), 1)
    fmr = 1.0 - np.searchsorted(i, thresholds, side="left") / max(len(i), 1)
    return thresholds, fmr, fnmr


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(EER, threshold) where FMR and FNMR cross."""
    thr, fmr, fnmr = det_curve(genuine, impostor)
    k = int(np.argmin(np.abs(fmr - fnmr)))
    return float((fmr[k] + fnmr[k]) / 2), float(thr[k])


@dataclass(frozen=True)
class VerificationReport:
    genuine_pairs: int
    impostor_pairs: int
    eer: float
    eer_threshold: float
    fnmr_at_fmr: dict[str, float]
    thresholds: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        return {
            "pairs": {"genuine": self.genuine_pairs, "impostor": self.impostor_pairs},
            "eer": self.eer,
            "eer_threshold": self.eer_threshold,
            "fnmr_at_fmr": self.fnmr_at_fmr,
            "thresholds_at_fmr": self.thresholds,
        }


def verification_report(genuine: np.ndarray, impostor: np.ndarray) -> VerificationReport:
    eer, eer_thr = equal_error_rate(genuine, impostor)
    thresholds = {k: threshold_at_fmr(impostor, v) for k, v in FMR_TARGETS.items()}
    fnmr = {k: fmr_fnmr(genuine, impostor, t)[1] for k, t in thresholds.items()}
    return VerificationReport(len(genuine), len(impostor), eer, eer_thr, fnmr, thresholds)
