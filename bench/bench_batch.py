"""Whole-process cost per photo of a batch, start-up included: ``facegate eval faces`` on N small
(250x250 LFW) photos against face_recognition's default path on the same files, alternating
rounds in one sitting (this shared machine drifts; only same-sitting ratios are fair).

    .venv/bin/pip install --no-deps face_recognition      # bench environment only
    .venv/bin/python bench/bench_batch.py [--images 400] [--rounds 3] [--json reports/batch.json]

Each run is a fresh process (models loaded, every photo embedded, for facegate also the pairs
scored). Wall time and CPU time (user + system, the children's own accounting) per photo, min and
median over the rounds. ``--pin 0`` runs both on one core (``sched_setaffinity``): facegate then
gets no second core for its concurrent models and pipeline; face_recognition (dlib-bin, no BLAS)
runs on one thread either way. ``run-face-recognition DIR`` is the competitor's loop on its own.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def make_folder(out: Path, n: int, seed: int = 0) -> int:
    """n LFW photos (as stored, 250x250), whole identities in a seeded order, as symlinks in
    out/<identity>/: the layout ``eval faces`` reads. Returns how many were linked."""
    by: dict[str, list[str]] = {}
    with (DATA / "faces" / "labels.csv").open() as fh:
        for r in csv.DictReader(fh):
            if r["note"].startswith("LFW image"):
                by.setdefault(r["identity"], []).append(r["file"])
    names = sorted(by)
    random.Random(seed).shuffle(names)
    count = 0
    for name in names:
        if count >= n:
            break
        (out / name).mkdir(parents=True, exist_ok=True)
        for f in by[name][: n - count]:
            (out / name / Path(f).name).symlink_to(DATA / f)
            count += 1
    return count


def run_face_recognition(folder: Path) -> int:
    """face_recognition's default path on every photo: load, HOG (upsample 1), encodings."""
    import face_recognition

    embedded = 0
    for path in sorted(folder.glob("*/*")):
        rgb = face_recognition.load_image_file(str(path))
        embedded += bool(face_recognition.face_encodings(rgb, face_recognition.face_locations(rgb)))
    print(json.dumps({"embedded": embedded}))
    return 0


def timed(cmd: list[str], pin: list[int] | None) -> tuple[float, float]:
    """(wall s, cpu s) of one child process run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(
        cmd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=(lambda: os.sched_setaffinity(0, pin)) if pin else None,
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pin", help="comma-separated cores for both commands, e.g. 0")
    ap.add_argument("--embedder", default="default")
    ap.add_argument("--json")
    ap.add_argument("run_face_recognition", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_face_recognition:
        if args.run_face_recognition[0] != "run-face-recognition":
            ap.error("unknown command")
        return run_face_recognition(Path(args.run_face_recognition[1]))
    pin = [int(c) for c in args.pin.split(",")] if args.pin else None
    with tempfile.TemporaryDirectory(prefix="facegate-bench-") as tmp:
        folder = Path(tmp)
        n = make_folder(folder, args.images)
        exe = str(Path(sys.executable).with_name("facegate"))
        commands = {
            "facegate": [exe, "eval", "faces", str(folder), "--no-progress"]
            + (["--embedder", args.embedder] if args.embedder != "default" else []),
            "face_recognition": [sys.executable, __file__, "run-face-recognition", str(folder)],
        }
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                times[name].append(timed(cmd, pin))
    out: dict = {
        "photos": n,
        "rounds": args.rounds,
        "pinned_to": pin,
        "load_average_at_end": os.getloadavg(),
    }
    for name, runs in times.items():
        walls, cpus = [w * 1000 / n for w, _ in runs], [c * 1000 / n for _, c in runs]
        out[name] = {
            "wall_ms_per_photo": {
                "min": round(min(walls), 1),
                "median": round(statistics.median(walls), 1),
            },
            "cpu_ms_per_photo": {
                "min": round(min(cpus), 1),
                "median": round(statistics.median(cpus), 1),
            },
        }
    ratios = [fr[0] / fg[0] for fg, fr in zip(times["facegate"], times["face_recognition"])]
    out["speedup_wall_per_round"] = [round(r, 2) for r in ratios]
    out["speedup_wall_median"] = round(statistics.median(ratios), 2)
    out["speedup_cpu_median"] = round(
        statistics.median(
            fr[1] / fg[1] for fg, fr in zip(times["facegate"], times["face_recognition"])
        ),
        2,
    )
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
