"""The colour-flash judge on synthetic colour samples: it must accept a face that follows the
sequence and refuse the attacks (no response, wrong sequence, late, uniform tint)."""

from __future__ import annotations

import numpy as np
import pytest

from facegate.liveness.flash import ColourSample, hex_rgb, judge_flash, screen_light

SEQUENCE = (
    ("#ff0000", 400),
    ("#00ff00", 350),
    ("#ffffff", 450),
    ("#0000ff", 300),
    ("#ffff00", 400),
)
SKIN = np.array([180.0, 130.0, 110.0])
WALL = np.array([120.0, 120.0, 125.0])


def samples(
    sequence, *, lag=150.0, face_gain=0.08, wall_gain=0.004, noise=0.004, seed=0, fps=15.0
) -> list[ColourSample]:
    rng = np.random.default_rng(seed)
    t = np.arange(0, 5000, 1000 / fps)
    light, _ = screen_light(sequence, t, lag, 0.0)
    out = []
    for ti, li in zip(t, light):
        face = SKIN * (1 + face_gain * li) * np.exp(rng.normal(0, noise, 3))
        wall = WALL * (1 + wall_gain * li) * np.exp(rng.normal(0, noise, 3))
        out.append(ColourSample(float(ti), tuple(face), tuple(wall)))
    return out


def passed(results) -> dict[str, bool]:
    return {r.name: r.passed for r in results}


def test_a_face_lit_by_the_sequence_passes_every_flash_cue() -> None:
    results = judge_flash(SEQUENCE, samples(SEQUENCE))
    assert all(r.passed for r in results), results
    assert {r.name for r in results} == {
        "flash_correlation",
        "flash_steps",
        "flash_face_vs_background",
    }


@pytest.mark.parametrize("seed", range(5))
def test_no_reflection_fails(seed: int) -> None:
    results = judge_flash(SEQUENCE, samples(SEQUENCE, face_gain=0.0, wall_gain=0.0, seed=seed))
    assert not all(r.passed for r in results)


def test_a_different_sequence_fails() -> None:
    other = (
        ("#00ffff", 400),
        ("#ff00ff", 350),
        ("#0000ff", 450),
        ("#ffff00", 300),
        ("#00ff00", 400),
    )
    results = judge_flash(SEQUENCE, samples(other))
    assert not passed(results)["flash_steps"] or not passed(results)["flash_correlation"]


def test_a_late_sequence_fails() -> None:
    results = judge_flash(SEQUENCE, samples(SEQUENCE, lag=1400))
    assert not all(r.passed for r in results)


def test_a_uniform_tint_fails_on_face_vs_background() -> None:
    results = judge_flash(SEQUENCE, samples(SEQUENCE, wall_gain=0.08))
    assert passed(results)["flash_correlation"]  # it does follow the sequence...
    assert not passed(results)["flash_face_vs_background"]  # ...everywhere alike


def test_no_frames_fail_closed() -> None:
    results = judge_flash(SEQUENCE, [])
    assert not any(r.passed for r in results)


def test_hex_rgb() -> None:
    assert hex_rgb("#ff8000") == (1.0, 128 / 255, 0.0)
