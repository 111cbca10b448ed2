"""`facegate eval attacks`: APCER per attack species, through the full liveness path.

- Generated (``facegate.attack``): photo on a stick, emulator (a photo warped to perform the
  challenge), the emulator shown on a screen, a splice of two people, a real video tinted with
  the challenge's colours. Photos come from the ``eval`` identities of ../shared/data/faces.
  Every attack answers the challenge it is judged against (it performs the actions on cue).
- Real (../shared/data/spoof, labels.csv): print and replay_screen photos (presented as a still
  video), replay_screen and animated_photo videos, against random challenges.

Each attack is judged twice: against the challenge without a colour flash, and with one (what
the capture page uses). An attack made before the challenge cannot follow the flash; the
``tint`` attack follows it on the whole frame. Reported per species: APCER with and without the
flash, how often the actions alone were fooled, and which reasons stopped the rest.
No threshold was tuned on this data (the flash on rendered ``tune`` videos, planarity on the
real videos); the ``spoof_split`` column still names each subject's half for later tuning.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facegate.attack.make import KINDS, AttackMaker, with_flash
from facegate.attack.media import write_video
from facegate.attack.synth import fit_frame
from facegate.engine.decode import decode_image
from facegate.engine.pipeline import FaceEngine
from facegate.errors import FacegateError
from facegate.eval.datasets import EVAL_LIMITS, load_spoof_samples
from facegate.liveness.challenge import Challenge, ChallengePolicy, create_challenge
from facegate.liveness.check import LivenessChecker, VideoAnalysis

STILL_MS = 5000.0
# judge(video bytes, challenges) and judge_frames(frames, name, challenges): one row per challenge
Judge = Callable[[bytes, list[Challenge]], list[dict[str, Any]]]
JudgeFrames = Callable[[list[np.ndarray], str, list[Challenge]], list[dict[str, Any]]]


def judge_both(
    checker: LivenessChecker, analysis: VideoAnalysis, challenge: Challenge, rng: random.Random
) -> dict[str, Any]:
    """Verdicts without and with a colour flash; the flash one uses ``challenge.flash`` when set."""
    plain = dataclasses.replace(challenge, flash=None)
    flashed = challenge if challenge.flash else with_flash(challenge, rng)
    no_flash = checker.judge_analysis(plain, analysis)
    flash = checker.judge_analysis(flashed, analysis)
    return {
        "actions": list(challenge.actions),
        "actions_fooled": all(e is not None for _, e in no_flash.matched),
        "live_without_flash": no_flash.live,
        "live_with_flash": flash.live,
        "reasons_without_flash": sorted({r.code for r in no_flash.reasons}),
        "reasons_with_flash": sorted({r.code for r in flash.reasons}),
        # every cue on its own: its score and whether it alone would have let the attack through
        "cues": {c.name: {"score": c.score, "passed": c.passed} for c in flash.cues},
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    out: dict[str, Any] = {"attempts": n}
    if not n:
        return out
    for key in ("live_without_flash", "live_with_flash", "actions_fooled"):
        out[key] = sum(r[key] for r in rows)
    out["apcer_without_flash"] = round(out["live_without_flash"] / n, 4)
    out["apcer_with_flash"] = round(out["live_with_flash"] / n, 4)
    cues: dict[str, list[int]] = {}
    for r in rows:
        for name, cue in r["cues"].items():
            counts = cues.setdefault(name, [0, 0])
            counts[0] += cue["passed"]
            counts[1] += 1
    out["cue_passed"] = {k: {"passed": v[0], "of": v[1]} for k, v in cues.items()}
    out["stopped_by_without_flash"] = dict(
        Counter(c for r in rows if not r["live_without_flash"] for c in r["reasons_without_flash"])
    )
    out["stopped_by_with_flash"] = dict(
        Counter(c for r in rows if not r["live_with_flash"] for c in r["reasons_with_flash"])
    )
    return out


def still_video(image: np.ndarray) -> list[np.ndarray]:
    frame = fit_frame(image)
    return [frame] * int(STILL_MS * 15 / 1000)


def run_attack_evaluation(
    data: Path,
    *,
    count: int = 20,
    seed: int = 11,
    real_challenges: int = 5,
    checker: LivenessChecker | None = None,
    keep: Path | None = None,
    kinds: Sequence[str] = KINDS,
) -> dict[str, Any]:
    """APCER of ``count`` generated attacks of each of ``kinds`` and of every real attack sample
    (``real_challenges`` random challenges each); ``keep`` keeps the written videos there."""
    checker = checker or LivenessChecker(
        FaceEngine(num_threads=2), limits=EVAL_LIMITS, num_threads=2
    )
    rng = random.Random(seed)
    policy = ChallengePolicy()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="facegate-attacks-") as tmp:
        work = keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)

        def judge(video: bytes, challenges: list[Challenge]) -> list[dict[str, Any]]:
            """One analysis of the video, judged against each challenge."""
            try:
                analysis = checker.analyse_video(video)
            except FacegateError as exc:  # refused outright: not live
                return [
                    {
                        "actions": list(c.actions),
                        "actions_fooled": False,
                        "live_without_flash": False,
                        "live_with_flash": False,
                        "reasons_without_flash": [exc.code],
                        "reasons_with_flash": [exc.code],
                        "cues": {},
                    }
                    for c in challenges
                ]
            return [judge_both(checker, analysis, c, rng) for c in challenges]

        def judge_frames(
            frames: list[np.ndarray], name: str, challenges: list[Challenge]
        ) -> list[dict[str, Any]]:
            path = write_video(frames, work / f"{name}.mp4")
            try:
                return judge(path.read_bytes(), challenges)
            finally:
                if keep is None:
                    path.unlink(missing_ok=True)

        generated = generated_attacks(checker, data, count, rng, judge_frames, kinds)
        real = real_attacks(data, real_challenges, rng, policy, judge_frames, judge)
    return {
        "generated": {k: summarise(v) for k, v in generated.items()},
        "real": real,
        "count_per_kind": count,
        "seconds": round(time.perf_counter() - started, 1),
        "note": __doc__,
    }


def generated_attacks(
    checker: LivenessChecker,
    data: Path,
    count: int,
    rng: random.Random,
    judge_frames: JudgeFrames,
    kinds: Sequence[str] = KINDS,
) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    if count <= 0 and not (data / "faces").is_dir():
        return results  # real attacks only, on a data folder without photos
    # made even for count 0 when there are photos: it shuffles them with ``rng``, and the real
    # attacks' challenges that follow must stay those of earlier reports
    maker = AttackMaker(checker.engine, checker.iris, data, "eval", rng)
    for kind in kinds:
        for i in range(count):
            attack, challenge = maker.make(kind, i)
            (row,) = judge_frames(attack.frames, f"{kind}-{i:04d}", [challenge])
            row["sources"] = attack.sources
            results[kind].append(row)
    return results


def real_attacks(
    data: Path,
    n_challenges: int,
    rng: random.Random,
    policy: ChallengePolicy,
    judge_frames: JudgeFrames,
    judge: Judge,
) -> dict[str, Any]:
    per_species: dict[str, list[dict[str, Any]]] = {}
    per_file = []
    for k, sample in enumerate(load_spoof_samples(data)):
        species = sample.attack_type
        path = data / sample.file
        still = None
        if sample.medium == "image":
            image = decode_image(path.read_bytes())
            still = still_video(image.rgb if hasattr(image, "rgb") else image)
        challenges = [
            create_challenge(policy, now=time.time(), rng=rng) for _ in range(n_challenges)
        ]
        if still is not None:  # a printed or on-screen photo held still
            outcomes = judge_frames(still, f"real-{k:03d}", challenges)
        else:  # the attack video as recorded
            outcomes = judge(path.read_bytes(), challenges)
        for outcome in outcomes:
            outcome["split"] = sample.split
        per_species.setdefault(species, []).extend(outcomes)
        per_file.append(
            {
                "file": sample.file,
                "species": species,
                "split": sample.split,
                "accepted_without_flash": sum(o["live_without_flash"] for o in outcomes),
                "accepted_with_flash": sum(o["live_with_flash"] for o in outcomes),
                "attempts": len(outcomes),
            }
        )
    return {
        "species": {s: summarise(v) for s, v in per_species.items()},
        "species_eval_split": {
            s: summarise([o for o in v if o["split"] == "eval"]) for s, v in per_species.items()
        },
        "files": per_file,
    }
