"""The liveness judge on real videos from ../shared/data/videos, and bad video input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from facegate.errors import FacegateError, InputError
from facegate.liveness.challenge import ChallengePolicy, create_challenge
from facegate.liveness.check import LivenessChecker
from facegate.liveness.video import VideoLimits, read_frames

POLICY = ChallengePolicy(min_actions=1)


@pytest.fixture(scope="module")
def checker(engine) -> LivenessChecker:
    return LivenessChecker(engine, limits=VideoLimits(max_seconds=25))


@pytest.fixture(scope="module")
def analysed(checker, shared_data: Path):
    cache = {}

    def get(name: str):
        if name not in cache:
            cache[name] = checker.analyse_video((shared_data / "videos" / name).read_bytes())
        return cache[name]

    return get


def decide(checker, analysed, name: str, actions: tuple[str, ...]):
    ch = create_challenge(POLICY, now=time.time(), actions=actions)
    return checker.judge_analysis(ch, analysed(name))


def test_blink_then_open_mouth_is_live(checker, analysed) -> None:
    v = decide(checker, analysed, "liveportrait_d18.mp4", ("blink", "open_mouth"))
    assert v.live, [r.code for r in v.reasons]
    assert [a for a, e in v.matched if e is not None] == ["blink", "open_mouth"]


@pytest.mark.parametrize("actions", [("turn_left",), ("look_up",), ("blink", "look_down")])
def test_actions_not_in_the_video_fail(checker, analysed, actions) -> None:
    v = decide(checker, analysed, "liveportrait_d18.mp4", actions)
    assert not v.live
    assert "action_missing" in {r.code for r in v.reasons}


def test_head_turns_in_order_and_out_of_order(checker, analysed) -> None:
    name = "tranvanluyt2203_real.mp4"
    assert decide(checker, analysed, name, ("turn_left", "turn_right", "look_down", "look_up")).live
    assert not decide(checker, analysed, name, ("look_up", "turn_left")).live


def test_a_real_head_turn_passes_planarity(checker, analysed) -> None:
    v = decide(checker, analysed, "tranvanluyt2203_real.mp4", ("turn_left", "turn_right"))
    planarity = next(c for c in v.cues if c.name == "planarity")
    assert planarity.passed and planarity.score > 2 * planarity.threshold, planarity


def test_stage_footage_with_cuts_is_not_live(checker, analysed) -> None:
    v = decide(checker, analysed, "face_recognition_short_hamilton_clip.mp4", ("look_down",))
    codes = {r.code for r in v.reasons}
    assert not v.live and codes & {"multiple_faces", "discontinuity", "identity_changed"}


def _write_video(path: Path, size: tuple[int, int], frames: int, fps: float = 15.0) -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path.read_bytes()


def _code(data: bytes, limits: VideoLimits | None = None) -> str:
    with pytest.raises(InputError) as info:
        list(read_frames(data, limits or VideoLimits()))
    return info.value.code


def test_bad_videos(shared_data: Path, tmp_path: Path) -> None:
    assert _code(b"") == "empty_file"
    assert _code(b"this is a text file, not a video\n" * 50) == "not_a_video"
    assert _code((shared_data / "videos/liveportrait_d9.mp4").read_bytes()) == "video_too_long"
    big = _write_video(tmp_path / "big.mp4", (2000, 1200), 3)
    assert _code(big) == "video_resolution_too_high"
    small = (shared_data / "videos/liveportrait_d0.mp4").read_bytes()
    assert _code(small, VideoLimits(max_bytes=len(small) - 1)) == "video_too_large"


def test_video_without_a_face(checker, tmp_path: Path) -> None:
    data = _write_video(tmp_path / "noise.mp4", (320, 240), 20)
    with pytest.raises(FacegateError) as info:
        checker.check(data, create_challenge(POLICY, now=time.time(), actions=("blink",)))
    assert info.value.code == "no_face"


def test_frames_are_sampled_at_most_15_per_second(shared_data: Path) -> None:
    frames = list(read_frames((shared_data / "videos/liveportrait_d0.mp4").read_bytes()))
    duration_s = frames[-1].t_ms / 1000
    assert len(frames) <= 15 * duration_s + 2


def test_cli_challenge_then_liveness_once(shared_data: Path, tmp_path: Path) -> None:
    env = {**os.environ, "FACEGATE_DATA_DIR": str(tmp_path / "data")}
    cli = [sys.executable, "-m", "facegate.cli.main"]

    def run(*args: str) -> tuple[int, dict]:
        p = subprocess.run([*cli, *args], capture_output=True, text=True, env=env, timeout=300)
        return p.returncode, json.loads(p.stdout)

    code, ch = run("challenge", "--actions", "blink,open_mouth")
    assert code == 0 and ch["actions"] == ["blink", "open_mouth"] and ch["flash"] is None
    (tmp_path / "ch.json").write_text(json.dumps(ch))
    video = str(shared_data / "videos/liveportrait_d18.mp4")
    code, out = run("liveness", video, "--challenge", str(tmp_path / "ch.json"))
    assert code == 0 and out["live"] is True and out["reasons"] == []
    assert {"live", "reasons", "events"} <= set(out)
    code, out = run("liveness", video, "--challenge", str(tmp_path / "ch.json"))
    assert code != 0 and out["error"] == "challenge_used"
    ch["token"] = ch["token"][:-3] + "AAA"
    (tmp_path / "forged.json").write_text(json.dumps(ch))
    code, out = run("liveness", video, "--challenge", str(tmp_path / "forged.json"))
    assert code != 0 and out["error"] == "invalid_challenge"
    code, flash = run("challenge", "--flash")
    assert code == 0 and 2 <= len(flash["actions"]) <= 4 and 4 <= len(flash["flash"]) <= 6


def test_threaded_analysis_equals_sequential_tracking(checker, analysed, shared_data) -> None:
    """The three-thread pipeline computes what one frame after another computes."""
    from facegate.liveness.signals import FaceTracker

    name = "liveportrait_d18.mp4"
    data = (shared_data / "videos" / name).read_bytes()
    engine = checker.engine
    tracker = FaceTracker(engine.detector, engine.mesh, checker.iris, counter=engine.detector.short)
    sequential = [tracker.step(f.rgb, f.t_ms) for f in read_frames(data, checker.limits)]
    threaded = analysed(name)
    assert len(threaded.signals) == len(sequential) == len(threaded.chips)
    for a, b in zip(threaded.signals, sequential):
        assert (a.t_ms, a.face, a.faces_counted) == (b.t_ms, b.face, b.faces_counted)
        for key in ("ear", "yaw_deg", "pitch_deg", "mouth"):
            assert getattr(a, key) == pytest.approx(getattr(b, key), abs=1e-6), key
    assert len(threaded.colours) == sum(s.face for s in sequential)


def test_no_blink_challenged_skips_the_eyes(checker, shared_data) -> None:
    data = (shared_data / "videos" / "liveportrait_d18.mp4").read_bytes()
    analysis = checker.analyse_video(data, colours_until_ms=-1, eyes=False)
    with_face = [s for s in analysis.signals if s.face]
    assert with_face and all(s.ear is None for s in with_face)
    assert all(s.yaw_deg is not None for s in with_face)
    assert analysis.colours == []
    ch = create_challenge(POLICY, now=time.time(), actions=("open_mouth",))
    assert checker.judge_analysis(ch, analysis).live
