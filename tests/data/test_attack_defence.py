"""Attack defence on real data: the colour flash rendered onto a real video, a real photo as a
card on a stick and as the emulator kit, and `facegate attack`. Each cue must be able to fail."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from random import Random

import pytest

from facegate.attack.lighting import render_flash
from facegate.attack.make import load_photo, make_attack
from facegate.attack.media import on_time_grid, track_video, write_video
from facegate.liveness.challenge import ChallengePolicy, create_challenge
from facegate.liveness.check import LivenessChecker
from facegate.liveness.video import VideoLimits

SEQUENCE = (
    ("#ff0000", 420),
    ("#00ffff", 380),
    ("#ffffff", 450),
    ("#0000ff", 400),
    ("#ffff00", 350),
)


@pytest.fixture(scope="module")
def checker(engine) -> LivenessChecker:
    return LivenessChecker(engine, limits=VideoLimits(max_seconds=25))


@pytest.fixture(scope="module")
def d18(checker, shared_data: Path):
    """liveportrait_d18 (blink, open mouth, blink), its first 7 s on a 15 fps grid."""
    data = (shared_data / "videos" / "liveportrait_d18.mp4").read_bytes()
    frames = track_video(checker.engine, checker.iris, data, checker.limits)
    return [(f.t_ms, f.rgb, f.mesh) for f in on_time_grid(frames) if f.t_ms <= 7000]


def flash_verdict(checker, frames, tmp_path: Path, name: str):
    path = write_video(frames, tmp_path / f"{name}.mp4")
    challenge = create_challenge(
        ChallengePolicy(min_actions=1), now=time.time(), actions=("blink", "open_mouth")
    )
    challenge = dataclasses.replace(challenge, flash=SEQUENCE)
    return checker.check(path.read_bytes(), challenge).verdict


def cue(verdict, name: str):
    return next(c for c in verdict.cues if c.name == name)


def test_a_face_lit_by_the_challenged_colours_is_live(checker, d18, tmp_path) -> None:
    lit = render_flash(d18, SEQUENCE, lag_ms=180, strength=0.09)
    v = flash_verdict(checker, lit, tmp_path, "lit")
    assert v.live, [r.to_dict() for r in v.reasons]
    assert {c.name for c in v.cues} >= {"flash_correlation", "flash_steps"}


def test_the_same_video_without_the_flash_is_not_live(checker, d18, tmp_path) -> None:
    v = flash_verdict(checker, [rgb for _, rgb, _ in d18], tmp_path, "plain")
    assert not v.live
    assert not cue(v, "flash_correlation").passed


def test_a_uniformly_tinted_video_is_not_live(checker, d18, tmp_path) -> None:
    tinted = render_flash(d18, SEQUENCE, lag_ms=180, strength=0.09, uniform=True)
    v = flash_verdict(checker, tinted, tmp_path, "tinted")
    assert not v.live
    assert not cue(v, "flash_face_vs_background").passed


def test_a_photo_on_a_stick_fails_planarity_and_the_emulator_fails_the_flash(
    checker, shared_data: Path, tmp_path: Path
) -> None:
    photo = load_photo(
        checker.engine, shared_data / "faces" / "Tony_Bennett" / "Tony_Bennett_0001.jpg"
    )
    assert photo is not None
    rng = Random(5)
    actions = ("turn_left", "look_down")
    challenge = create_challenge(ChallengePolicy(), now=time.time(), actions=actions)
    stick = make_attack("photo_on_stick", [photo], actions, rng)
    path = write_video(stick.frames, tmp_path / "stick.mp4")
    v = checker.check(path.read_bytes(), challenge).verdict
    assert not v.live and not cue(v, "planarity").passed

    emu = make_attack("emulator", [photo], actions, rng)
    data = write_video(emu.frames, tmp_path / "emulator.mp4").read_bytes()
    flashed = dataclasses.replace(challenge, flash=SEQUENCE)
    v = checker.check(data, flashed).verdict
    assert not v.live
    assert not cue(v, "flash_correlation").passed


def test_attack_cli_writes_videos_and_a_manifest(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "attacks"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "facegate.cli.main",
            "attack",
            "photo_on_stick",
            "--count",
            "2",
            "--data",
            str(shared_data),
            "--out",
            str(out),
            "--actions",
            "turn_left",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [m["file"] for m in manifest] == ["photo_on_stick-0000.mp4", "photo_on_stick-0001.mp4"]
    assert all((out / m["file"]).stat().st_size > 10_000 for m in manifest)
    assert manifest[0]["actions"] == ["turn_left"]
