"""The CLI contract, run as a user runs it: a subprocess, real images, JSON on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from facegate.eval.faces import identity_split

CLI = [sys.executable, "-m", "facegate.cli.main"]


def run(*args: str) -> tuple[int, dict]:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, json.loads(proc.stdout)


def test_compare_same_person(shared_data: Path) -> None:
    a = shared_data / "faces/Joseph_Biden/face_recognition_biden.jpg"
    b = shared_data / "faces/Joseph_Biden/face_recognition_biden2.jpg"
    code, out = run("compare", str(a), str(b))
    assert code == 0
    assert out["match"] is True and isinstance(out["score"], float)
    assert out["score"] >= out["threshold"] and out["operating_point"] == "fmr_1e-3"
    assert set(out["images"]) == {"a", "b"} and "sharpness" in out["images"]["a"]["quality"]


def test_compare_different_people_with_dlib(shared_data: Path) -> None:
    a = shared_data / "faces/Joseph_Biden/face_recognition_biden.jpg"
    b = shared_data / "faces/alex_lacamoire/face_recognition_img1.jpg"
    code, out = run("compare", str(a), str(b), "--embedder", "dlib")
    assert code == 0
    assert out["match"] is False and out["embedder"] == "dlib"


def test_compare_bad_input_is_a_json_error(shared_data: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all\n" * 10)
    good = shared_data / "faces/Joseph_Biden/face_recognition_biden.jpg"
    code, out = run("compare", str(good), str(text))
    assert code != 0
    assert out["error"] == "not_an_image" and out["image"] == "b"
    code, out = run("compare", str(good), str(tmp_path / "missing.jpg"))
    assert code != 0 and out["error"] == "file_not_found"


def test_eval_faces_report(shared_data: Path, tmp_path: Path) -> None:
    # a small folder of 12 'eval' identities, linked from the shared data
    root = tmp_path / "faces"
    people = sorted(
        p
        for p in (shared_data / "faces").iterdir()
        if p.is_dir() and identity_split(p.name) == "eval" and len(list(p.iterdir())) >= 2
    )[:12]
    for person in people:
        (root / person.name).mkdir(parents=True)
        for f in sorted(person.iterdir())[:3]:
            (root / person.name / f.name).symlink_to(f)
    report = tmp_path / "report.json"
    code, out = run("eval", "faces", str(root), "--report", str(report), "--no-progress")
    assert code == 0
    saved = json.loads(report.read_text())
    for key in ("eer", "fnmr_at_fmr", "pairs", "failure_to_enrol"):
        assert key in out and key in saved
    assert set(saved["fnmr_at_fmr"]) == {"1e-2", "1e-3", "1e-4"}
    assert saved["pairs"]["genuine"] >= 12 and saved["pairs"]["impostor"] >= 200
    assert (tmp_path / "report.png").stat().st_size > 1000


@pytest.mark.parametrize("args", [["compare"], ["eval", "faces"]])
def test_usage_errors_exit_non_zero(args: list[str]) -> None:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
