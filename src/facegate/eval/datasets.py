"""What the evaluations know about a data folder laid out like ../shared/data.

Everything dataset-specific lives here, so that ``facegate.attack`` (which makes attacks from the
data) and the evaluations read the same truth, and ``attack/`` needs nothing else from
``eval/`` (no import circle). This module imports nothing from ``attack/`` or other ``eval/``
modules.

Layout::

    DIR/faces/<identity>/<images>           one folder per person
    DIR/videos/labels.csv                   file, capture, blink, head_turn, head_nod, mouth, ...
    DIR/videos/labels_checked.json          optional sidecar: the truth checked by eye
    DIR/spoof/labels.csv                    file, label, attack_type, medium, subject, ...

**Video truth.** Each video row of ``videos/labels.csv`` is read into a :class:`VideoTruth`
(see :func:`truth_from_labels` for the rules: a confirmed action with its first time goes into
``contains``, anything probable, unclear, slight or untimed-and-vague into ``doubtful``). The
labels of ../shared/data were written from sampled frames, and several were then checked by eye
frame by frame; those conclusions cannot be written into the read-only data, so they live in a
sidecar JSON (``{"videos": {name: {"contains", "doubtful", "note", "capture", "sha256"}}}``)
whose entries replace the row's derived truth. The sidecar is read from the data folder
(``videos/labels_checked.json``) when there is one, else from ``shared_data_checked.json``
shipped next to this module, which describes ../shared/data. Every entry of the shipped file
carries the sha256 of its video and applies only to a file with those bytes, so it follows the
shared videos into any folder (a copy, a symlink) and never mislabels a different video that
happens to share a name.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facegate.liveness.actions import ACTIONS
from facegate.liveness.video import VideoLimits

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".avi", ".mkv", ".m4v"}
SPLITS = ("all", "tune", "eval")
SIDECAR_NAME = "labels_checked.json"
DEFAULT_SIDECAR = Path(__file__).with_name("shared_data_checked.json")
EVAL_LIMITS = VideoLimits(max_seconds=25.0)  # three labelled videos run 17.9-20.7 s


def hash_split(name: str) -> str:
    """'tune' or 'eval': the first byte of sha256(name) even -> tune. Stable, needs no list, and
    puts every file of one person (or one video) on the same side."""
    return "tune" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "eval"


identity_split = hash_split  # faces: by folder name (the identity)
video_split = hash_split  # videos: by file name
spoof_split = hash_split  # spoof samples: by the ``subject`` column


# --- faces -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    identity: str


def list_faces(root: Path, split: str = "all") -> list[LabelledImage]:
    """The images under ``root/<identity>/`` of one split, in a stable order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    out: list[LabelledImage] = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        if split != "all" and identity_split(person.name) != split:
            continue
        out.extend(
            LabelledImage(f, person.name)
            for f in sorted(person.iterdir())
            if f.suffix.lower() in IMAGE_SUFFIXES
        )
    return out


# --- videos ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoTruth:
    contains: tuple[str, ...]  # the actions shown, in time order
    doubtful: frozenset[str] = frozenset()  # neither asked for in bona fide nor in replay
    note: str = ""
    capture: bool = True  # False: not a selfie capture, so never a bona fide presentation


_TIME = re.compile(r"(\d+(?:\.\d+)?)\s*(?:-\s*\d+(?:\.\d+)?\s*)?s\b")
_VAGUE = ("probable", "unclear", "slight", "small", "possibl", "maybe")


def _first_time(text: str) -> float | None:
    found = _TIME.search(text)
    return float(found.group(1)) if found else None


def _absent(text: str) -> bool:
    return not text or text.startswith(("no", "n/a", "none", "closed"))


def truth_from_labels(row: dict[str, str]) -> VideoTruth:
    """A video's truth from its ``videos/labels.csv`` row, conservatively.

    - ``blink``: "yes ..." -> blink; anything else but "no" -> doubtful.
    - ``head_turn``: "yes: ..." clauses naming where the nose points in the image
      ("image-right" -> ``turn_left``, "image-left" -> ``turn_right``, the PROVENANCE.md
      convention); a "yes" without a direction, or slight/small/unclear -> both doubtful.
    - ``head_nod``: "yes: ..." clauses with "down" -> ``look_down``, "up" -> ``look_up``; vague
      wording -> doubtful (the direction named, else both).
    - ``mouth``: "open" with a time -> ``open_mouth``; "open" without one, talking, singing or
      speech -> doubtful; small, closed or a smile -> absent.
    - ``capture`` containing "not a selfie" -> not a capture.

    Confirmed actions are ordered by the first time their clause gives (untimed ones last).
    Anything this misreads is what the sidecar is for.
    """
    timed: list[tuple[float, int, str]] = []
    doubtful: set[str] = set()

    def add(action: str, clause: str) -> None:
        t = _first_time(clause)
        timed.append((t if t is not None else float("inf"), len(timed), action))

    blink = row.get("blink", "").strip().lower()
    if blink.startswith("yes"):
        add("blink", blink)
    elif not _absent(blink):
        doubtful.add("blink")

    for column, words in (
        ("head_turn", {"image-right": "turn_left", "image-left": "turn_right"}),
        ("head_nod", {"down": "look_down", "up": "look_up"}),
    ):
        text = row.get(column, "").strip().lower()
        if _absent(text):
            continue
        confirmed = text.startswith("yes") and not any(v in text for v in _VAGUE)
        for clause in re.split(r"[;,]", text):
            named = [action for word, action in words.items() if word in clause]
            if confirmed and len(named) == 1:
                add(named[0], clause)
            elif named:
                doubtful.update(named)
            elif clause.strip() not in ("", "yes"):
                doubtful.update(words.values())
        if confirmed and not any(a in words.values() for _, _, a in timed):
            doubtful.update(words.values())

    mouth = row.get("mouth", "").strip().lower()
    if "open" in mouth and not _absent(mouth):
        clause = next(c for c in re.split(r"[;,]", mouth) if "open" in c)
        if _first_time(clause) is not None:
            add("open_mouth", clause)
        else:
            doubtful.add("open_mouth")
    elif any(w in mouth for w in ("talk", "sing", "speech", "lip")):
        doubtful.add("open_mouth")

    contains = tuple(a for _, _, a in sorted(timed))
    capture = "not a selfie" not in row.get("capture", "").lower()
    note = "; ".join(
        f"{c}: {row[c]}" for c in ("blink", "head_turn", "head_nod", "mouth") if row.get(c)
    )
    return VideoTruth(
        contains, frozenset(doubtful - set(contains)), f"from labels.csv: {note}", capture
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_sidecar(data: Path) -> dict[str, dict[str, Any]]:
    """The checked-by-eye entries: the data folder's own sidecar, else the shipped default."""
    own = data / "videos" / SIDECAR_NAME
    path = own if own.is_file() else DEFAULT_SIDECAR
    entries = json.loads(path.read_text())["videos"]
    for name, entry in entries.items():
        unknown = set(entry.get("contains", ())) | set(entry.get("doubtful", ()))
        if not unknown <= set(ACTIONS):
            raise ValueError(
                f"{path}: {name} names unknown actions {sorted(unknown - set(ACTIONS))}"
            )
    return dict(entries)


def _from_sidecar(entry: dict[str, Any]) -> VideoTruth:
    return VideoTruth(
        tuple(entry.get("contains", ())),
        frozenset(entry.get("doubtful", ())),
        str(entry.get("note", "")),
        bool(entry.get("capture", True)),
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def load_video_truth(data: Path) -> dict[str, VideoTruth]:
    """Every video of ``data/videos/labels.csv`` (in the file's order) with its truth, keyed by
    file name. Sidecar entries replace derived truth where their sha256 (if given) matches."""
    sidecar = load_sidecar(data)
    out: dict[str, VideoTruth] = {}
    for row in _rows(data / "videos" / "labels.csv"):
        path = data / row["file"]
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            continue  # reference photos
        entry = sidecar.get(path.name)
        if entry is not None and (not entry.get("sha256") or entry["sha256"] == _sha256(path)):
            out[path.name] = _from_sidecar(entry)
        else:
            out[path.name] = truth_from_labels(row)
    return out


def bona_fide_videos(truth: dict[str, VideoTruth]) -> dict[str, VideoTruth]:
    """The selfie captures: judged as bona fide (when they show an action) and as replays."""
    return {name: t for name, t in truth.items() if t.capture}


def not_a_capture(truth: dict[str, VideoTruth]) -> list[str]:
    """Videos that must come out not live whatever is asked (stage footage and the like)."""
    return sorted(name for name, t in truth.items() if not t.capture)


# --- spoof -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpoofSample:
    file: str  # relative to the data folder
    label: str  # real | attack
    attack_type: str  # none | print | replay_screen | animated_photo
    medium: str  # image | video | video(gif)
    subject: str

    @property
    def split(self) -> str:
        return spoof_split(self.subject)


def load_spoof_samples(data: Path, labels: Iterable[str] = ("attack",)) -> list[SpoofSample]:
    """The rows of ``data/spoof/labels.csv`` with one of ``labels``, in the file's order."""
    wanted = set(labels)
    return [
        SpoofSample(r["file"], r["label"], r["attack_type"], r["medium"], r["subject"])
        for r in _rows(data / "spoof" / "labels.csv")
        if r["label"] in wanted
    ]
