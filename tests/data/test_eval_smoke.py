"""Smoke tests of the PAD evaluations (the numbers in the README) on a data folder of a few real
files: they run end to end on any folder laid out like ../shared/data and report what scripts
read. The full runs take minutes to hours; these take seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers.data import tiny_data_folder

CLI = [sys.executable, "-m", "facegate.cli.main"]
VIDEOS = ("liveportrait_d0.mp4", "liveportrait_d18.mp4")
SPOOF = ("attack/liveportrait_showcase2.gif", "attack/nuaa_0001_00_00_01_0.jpg")
IDENTITIES = ("Al_Gore", "Alec_Baldwin", "Amelie_Mauresmo")  # "eval" split identities


@pytest.fixture(scope="module")
def tiny(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_data_folder(
        shared_data,
        tmp_path_factory.mktemp("tiny-data"),
        videos=VIDEOS,
        spoof=SPOOF,
        identities=IDENTITIES,
    )


def _run(*args: str) -> dict:
    out = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def test_eval_liveness_runs_on_any_data_folder(tiny: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "liveness.json"
    printed = _run(
        "eval", "liveness", "--data", str(tiny), "--report", str(report_path),
        "--attacks", "0", "--flash-trials", "0", "--real-challenges", "1",
    )  # fmt: skip
    report = json.loads(report_path.read_text())
    assert report == printed
    assert 0.0 <= report["bpcer"] <= 1.0
    assert {"replay", "print", "animated_photo"} <= set(report["apcer"])
    assert [v["video"] for v in report["videos"]] == list(VIDEOS)
    assert report["bona_fide"]["videos"] == 2
    # the truth checked by eye (shipped sidecar) follows the shared videos by their sha256
    d18 = next(v for v in report["videos"] if v["video"] == "liveportrait_d18.mp4")
    assert d18["labelled"] == ["blink", "open_mouth", "blink"]
    assert report["attacks"]["real"]["species"]["print"]["attempts"] == 1


def test_eval_liveness_refuses_a_folder_without_labels(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    out = subprocess.run(
        [*CLI, "eval", "liveness", "--data", str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert json.loads(out.stdout)["error"] == "file_not_found"


def test_eval_flash_on_two_videos(tiny: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "flash.json"
    report = _run(
        "eval", "flash", "--data", str(tiny), "--split", "all", "--trials", "1",
        "--report", str(report_path),
    )  # fmt: skip
    assert json.loads(report_path.read_text()) == report
    assert report["videos"] == list(VIDEOS)
    assert report["bona_fide"]["trials"] == 2
    assert set(report["apcer"]) == {"no_flash", "wrong_sequence", "late_sequence", "uniform_tint"}
    assert 0.0 <= report["bpcer"] <= 1.0


def test_attack_evaluation_on_one_generated_and_the_real_attacks(tiny: Path) -> None:
    from facegate.eval.attacks import run_attack_evaluation

    report = run_attack_evaluation(tiny, count=1, real_challenges=1, kinds=("photo_on_stick",))
    stick = report["generated"]["photo_on_stick"]
    assert stick["attempts"] == 1
    assert 0.0 <= stick["apcer_with_flash"] <= stick["apcer_without_flash"] <= 1.0
    assert set(report["real"]["species"]) == {"print", "animated_photo"}
    assert [f["file"] for f in report["real"]["files"]] == [f"spoof/{s}" for s in SPOOF]
