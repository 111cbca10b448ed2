"""Error-rate arithmetic on scores whose answers are known by construction."""

from __future__ import annotations

import numpy as np

from facegate.eval.det import equal_error_rate, fmr_fnmr, threshold_at_fmr, verification_report


def test_threshold_at_fmr_admits_at_most_the_target() -> None:
    impostor = np.arange(10_000, dtype=np.float64) / 10_000  # 0.0000 .. 0.9999
    for fmr in (1e-2, 1e-3, 1e-4):
        thr = threshold_at_fmr(impostor, fmr)
        realised, _ = fmr_fnmr(np.array([1.0]), impostor, thr)
        assert realised <= fmr
        assert realised >= fmr - 1.5e-4  # and not needlessly strict


def test_separable_scores_have_zero_eer() -> None:
    eer, thr = equal_error_rate(np.array([0.8, 0.9, 0.95]), np.array([0.1, 0.2, 0.3]))
    assert eer == 0.0 and 0.3 < thr <= 0.8


def test_overlapping_scores() -> None:
    rng = np.random.default_rng(0)
    genuine = rng.normal(1.0, 0.5, 20_000)
    impostor = rng.normal(0.0, 0.5, 20_000)
    eer, thr = equal_error_rate(genuine, impostor)
    # two unit-separated normals with sigma 0.5 cross at 0.5: EER = Phi(-1) = 0.1587
    assert abs(eer - 0.1587) < 0.01 and abs(thr - 0.5) < 0.03
    rep = verification_report(genuine, impostor)
    assert rep.fnmr_at_fmr["1e-2"] < rep.fnmr_at_fmr["1e-3"] < rep.fnmr_at_fmr["1e-4"]
    assert rep.to_dict()["pairs"] == {"genuine": 20_000, "impostor": 20_000}
