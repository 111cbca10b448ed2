"""Small data folders laid out like ../shared/data, made of links to a few of its files, so that
the evaluations can be smoke-tested in seconds on real videos and photos."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path


def _link_rows(shared: Path, dest: Path, labels: str, files: Iterable[str]) -> None:
    """Link ``files`` (paths relative to the data folder) and write their rows of ``labels``."""
    wanted = set(files)
    with (shared / labels).open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = [r for r in reader if r["file"] in wanted]
    assert {r["file"] for r in rows} == wanted, f"not all of {sorted(wanted)} are in {labels}"
    for row in rows:
        target = dest / row["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(shared / row["file"])
    out = dest / labels
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def tiny_data_folder(
    shared: Path,
    dest: Path,
    *,
    videos: Iterable[str] = (),
    spoof: Iterable[str] = (),
    identities: Iterable[str] = (),
) -> Path:
    """``dest`` with videos/ and spoof/ (the chosen files and their labels.csv rows) and
    faces/<identity>/ for the chosen identities. File names are as in the shared data."""
    dest.mkdir(parents=True, exist_ok=True)
    _link_rows(shared, dest, "videos/labels.csv", (f"videos/{v}" for v in videos))
    _link_rows(shared, dest, "spoof/labels.csv", (f"spoof/{s}" for s in spoof))
    for identity in identities:
        (dest / "faces").mkdir(exist_ok=True)
        (dest / "faces" / identity).symlink_to(shared / "faces" / identity)
    return dest
