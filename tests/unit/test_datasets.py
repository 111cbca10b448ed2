"""Ground truth of the evaluations from a data folder's labels.csv and its sidecar (synthetic
folders, no models)."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from facegate.eval.datasets import (
    DEFAULT_SIDECAR,
    SIDECAR_NAME,
    bona_fide_videos,
    load_spoof_samples,
    load_video_truth,
    not_a_capture,
    truth_from_labels,
)

FIELDS = ["file", "capture", "blink", "head_turn", "head_nod", "mouth", "note"]


def _write_labels(folder: Path, rows: list[dict[str, str]]) -> None:
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    with (folder / "videos" / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        (folder / row["file"]).write_bytes(row["file"].encode())  # stands in for the video


def test_labels_become_truth_conservatively() -> None:
    truth = truth_from_labels(
        {
            "capture": "phone, plain wall",
            "blink": "yes (~0.4, 1.4s)",
            "head_turn": "yes: nose toward image-right 2.4-5.4s, nose toward image-left 7.4-10.4s",
            "head_nod": "slight downward 3.0-5.2s",
            "mouth": "talking",
        }
    )
    # turn_left moves the nose toward image-right (PROVENANCE.md's convention)
    assert truth.contains == ("blink", "turn_left", "turn_right")
    assert truth.doubtful == {"look_down", "open_mouth"}
    assert truth.capture


def test_vague_labels_are_doubtful_and_stage_footage_is_no_capture() -> None:
    truth = truth_from_labels(
        {
            "capture": "stage performance footage with camera cuts, not a selfie",
            "blink": "probable (~1.8s)",
            "head_turn": "no",
            "head_nod": "no",
            "mouth": "open mouth ~2-2.9s; wide open (shout) ~3.5-4.5s",
        }
    )
    assert truth.contains == ("open_mouth",)
    assert truth.doubtful == {"blink"}
    assert not truth.capture


def test_sidecar_in_the_data_folder_replaces_the_labels(tmp_path: Path) -> None:
    _write_labels(
        tmp_path,
        [
            {"file": "videos/a.mp4", "blink": "probable (~1.0s)"},
            {"file": "videos/b.mp4", "blink": "yes (~1.0s)"},
            {"file": "videos/photo.png", "capture": "still photo"},
            {"file": "videos/stage.mp4", "capture": "stage, not a selfie"},
        ],
    )
    sidecar = {"videos": {"a.mp4": {"contains": ["blink"], "note": "seen at 1.0 s"}}}
    (tmp_path / "videos" / SIDECAR_NAME).write_text(json.dumps(sidecar))
    truth = load_video_truth(tmp_path)
    assert list(truth) == ["a.mp4", "b.mp4", "stage.mp4"]  # file order; photos left out
    assert truth["a.mp4"].contains == ("blink",) and truth["a.mp4"].note == "seen at 1.0 s"
    assert truth["b.mp4"].contains == ("blink",) and truth["b.mp4"].note.startswith("from labels")
    assert list(bona_fide_videos(truth)) == ["a.mp4", "b.mp4"]
    assert not_a_capture(truth) == ["stage.mp4"]


def test_a_sidecar_entry_applies_only_to_the_bytes_it_names(tmp_path: Path) -> None:
    _write_labels(tmp_path, [{"file": "videos/a.mp4"}, {"file": "videos/b.mp4"}])
    digest = hashlib.sha256(b"videos/a.mp4").hexdigest()
    entries = {
        "a.mp4": {"sha256": digest, "contains": ["blink"]},
        "b.mp4": {"sha256": "0" * 64, "contains": ["blink"]},  # a different video of that name
    }
    (tmp_path / "videos" / SIDECAR_NAME).write_text(json.dumps({"videos": entries}))
    truth = load_video_truth(tmp_path)
    assert truth["a.mp4"].contains == ("blink",)
    assert truth["b.mp4"].contains == ()


def test_without_its_own_sidecar_a_folder_uses_the_shipped_one(tmp_path: Path) -> None:
    shipped = json.loads(DEFAULT_SIDECAR.read_text())["videos"]
    assert "liveportrait_d18.mp4" in shipped and all("sha256" in e for e in shipped.values())
    _write_labels(tmp_path, [{"file": "videos/liveportrait_d18.mp4", "mouth": "closed"}])
    # same name, other bytes: the shipped entry does not apply
    assert load_video_truth(tmp_path)["liveportrait_d18.mp4"].contains == ()


def test_unknown_actions_in_a_sidecar_are_refused(tmp_path: Path) -> None:
    _write_labels(tmp_path, [{"file": "videos/a.mp4"}])
    bad = {"videos": {"a.mp4": {"contains": ["wave"]}}}
    (tmp_path / "videos" / SIDECAR_NAME).write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="wave"):
        load_video_truth(tmp_path)


def test_spoof_samples_and_their_split(tmp_path: Path) -> None:
    (tmp_path / "spoof").mkdir()
    (tmp_path / "spoof" / "labels.csv").write_text(
        "file,label,attack_type,medium,subject\n"
        "spoof/attack/p.jpg,attack,print,image,s1\n"
        "spoof/real/r.jpg,real,none,image,s1\n"
    )
    (sample,) = load_spoof_samples(tmp_path)
    assert sample.file == "spoof/attack/p.jpg"
    assert (sample.attack_type, sample.medium) == ("print", "image")
    assert sample.split in ("tune", "eval")
    assert len(load_spoof_samples(tmp_path, labels=("attack", "real"))) == 2
