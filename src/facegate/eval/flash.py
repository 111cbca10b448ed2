"""`facegate eval flash`: the colour-flash cue on reflections rendered onto real videos.

No video in ../shared/data was recorded under a flashing screen, so the bona fide case is
rendered (``facegate.attack.lighting``): the challenge's colours added to the face by its mesh
normals, faintly to the background, from a random start 0-400 ms into the recording. Attacks:
the untouched video (made before the challenge), a different sequence, the right sequence
1.0-1.6 s late, and the right sequence as a uniform tint of the whole frame. Every case is
written as an MP4 and judged through the full video path (decode, track, sample colours).

Videos (the selfie captures of the data folder's videos/labels.csv, ``facegate.eval.datasets``)
are split by sha256(file name) like the face data: thresholds were set on ``tune``.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from facegate.attack.lighting import render_flash
from facegate.attack.media import on_time_grid, track_video, write_video
from facegate.engine.pipeline import FaceEngine
from facegate.eval.datasets import EVAL_LIMITS, bona_fide_videos, load_video_truth, video_split
from facegate.liveness.challenge import ChallengePolicy, create_challenge, random_flash
from facegate.liveness.check import LivenessChecker
from facegate.liveness.flash import judge_flash

ATTACKS = ("no_flash", "wrong_sequence", "late_sequence", "uniform_tint")
CUES = ("flash_correlation", "flash_steps", "flash_face_vs_background")
FLASH_WINDOW_MS = 7000.0  # the flash plays at the start; later frames are not needed


def run_flash_evaluation(
    data: Path,
    *,
    split: str = "eval",
    trials: int = 3,
    strength: tuple[float, float] = (0.06, 0.12),
    seed: int = 7,
    checker: LivenessChecker | None = None,
) -> dict[str, Any]:
    checker = checker or LivenessChecker(
        FaceEngine(num_threads=2), limits=EVAL_LIMITS, num_threads=2
    )
    rng = random.Random(seed)
    policy = ChallengePolicy(flash=True)
    truth_by_video = bona_fide_videos(load_video_truth(data))
    names = [n for n in truth_by_video if split == "all" or video_split(n) == split]
    bona: list[dict[str, Any]] = []
    full: list[dict[str, Any]] = []  # bona fide trials judged on actions and every cue
    attacks: dict[str, list[dict[str, Any]]] = {k: [] for k in ATTACKS}
    with tempfile.TemporaryDirectory(prefix="facegate-flash-eval-") as work:
        out = Path(work)
        for name in names:
            tracked = track_video(
                checker.engine, checker.iris, (data / "videos" / name).read_bytes(), EVAL_LIMITS
            )
            whole = [(f.t_ms, f.rgb, f.mesh) for f in on_time_grid(tracked)]
            frames = on_time_grid([f for f in tracked if f.t_ms <= FLASH_WINDOW_MS])
            plain = [(f.t_ms, f.rgb, f.mesh) for f in frames]
            truth = truth_by_video[name].contains
            original = checker.analyse_video(
                write_video([f.rgb for f in frames], out / "original.mp4").read_bytes()
            )
            for trial in range(trials):
                sequence = random_flash(policy, rng)
                other = random_flash(policy, rng)
                lag = rng.uniform(0, 400)
                gain = rng.uniform(*strength)
                cases = {
                    # the whole video, so that the full verdict (actions too) can be judged
                    "bona_fide": render_flash(whole, sequence, lag_ms=lag, strength=gain),
                    "wrong_sequence": render_flash(plain, other, lag_ms=lag, strength=gain),
                    "late_sequence": render_flash(
                        plain, sequence, lag_ms=rng.uniform(1000, 1600), strength=gain
                    ),
                    "uniform_tint": render_flash(
                        plain, sequence, lag_ms=lag, strength=gain, uniform=True
                    ),
                }
                for case, rendered in cases.items():
                    path = write_video(rendered, out / f"{case}.mp4")
                    analysis = checker.analyse_video(path.read_bytes())
                    cues = judge_flash(sequence, analysis.colours, checker.flash_policy)
                    row = {
                        "video": name,
                        "trial": trial,
                        "strength": round(gain, 3),
                        "passed": all(c.passed for c in cues),
                        **{c.name: c.score for c in cues},
                    }
                    if case == "bona_fide" and truth:
                        challenge = create_challenge(
                            ChallengePolicy(min_actions=1), now=time.time(), actions=truth
                        )
                        flashed = dataclasses.replace(challenge, flash=sequence)
                        verdict = checker.judge_analysis(flashed, analysis)
                        row["verdict_live"] = verdict.live
                        row["verdict_reasons"] = sorted({r.code for r in verdict.reasons})
                        full.append(row)
                    (bona if case == "bona_fide" else attacks[case]).append(row)
                cues = judge_flash(sequence, original.colours, checker.flash_policy)
                attacks["no_flash"].append(
                    {
                        "video": name,
                        "trial": trial,
                        "passed": all(c.passed for c in cues),
                        **{c.name: c.score for c in cues},
                    }
                )
    return {
        "split": split,
        "videos": names,
        "trials_per_video": trials,
        "strength": list(strength),
        "policy": checker.flash_policy.__dict__,
        "bpcer": rate(bona, accepted=False),
        "bona_fide": summary(bona),
        "bpcer_full_verdict": round(
            sum(not r["verdict_live"] for r in full) / max(len(full), 1), 4
        ),
        "full_verdict": {
            "trials": len(full),
            "rejected": [
                {k: r[k] for k in ("video", "trial", "strength", "verdict_reasons")}
                for r in full
                if not r["verdict_live"]
            ],
        },
        "apcer": {k: rate(v, accepted=True) for k, v in attacks.items()},
        "attacks": {k: summary(v) for k, v in attacks.items()},
        "note": "validated on rendered reflections only; see facegate.eval.flash",
    }


def rate(rows: list[dict[str, Any]], *, accepted: bool) -> float:
    if not rows:
        return 0.0
    return sum(r["passed"] == accepted for r in rows) / len(rows)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"trials": len(rows), "passed": sum(r["passed"] for r in rows)}
    for key in CUES:
        values = np.array([r[key] for r in rows], dtype=float)
        if len(values):
            out[key] = {
                "min": round(float(values.min()), 3),
                "p10": round(float(np.percentile(values, 10)), 3),
                "median": round(float(np.median(values)), 3),
                "p90": round(float(np.percentile(values, 90)), 3),
                "max": round(float(values.max()), 3),
            }
    brief = [{k: r[k] for k in ("video", "trial", *CUES)} for r in rows]
    out["failed"] = [b for b, r in zip(brief, rows) if not r["passed"]][:20]
    out["accepted"] = [b for b, r in zip(brief, rows) if r["passed"]][:20]
    return out
