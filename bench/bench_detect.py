"""Does the second BlazeFace model (full-range) have to run on every image?

For every photo of ../shared/data/faces, and for two-person pictures built from them (two
different people side by side, the second scaled to 0.5-1.0 of the first's size, on 640x480 and
on 320x240 canvases), this runs the short-range and the full-range model separately and compares
what the engine would decide (no face / one face / several faces of at least half the main face's
width, and the main box) when:

- ``both``: both models on every image (the engine before this work);
- ``short``: the short-range model alone;
- ``cond(T)``: the full-range model only when the short-range one finds no face, or its largest
  face is narrower than T pixels of the model's 128-pixel input (faces small enough that a second
  face half their width could be below what the short-range model sees).

    .venv/bin/python bench/bench_detect.py [--pairs 300] [--json reports/detect.json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import cv2
import numpy as np

from facegate.engine.decode import decode_image
from facegate.engine.detect import BlazeFaceDetector, nms
from facegate.eval.faces import list_faces
from facegate.types import FaceBox

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
THRESHOLDS = (0, 24, 32, 40, 48, 64, 128)
MIN_RELATIVE = 0.5  # engine.pipeline.SECOND_FACE_MIN_RELATIVE_WIDTH


def merge(found: list[FaceBox]) -> list[FaceBox]:
    if len(found) <= 1:
        return found
    boxes = np.array([b.xyxy for b in found], dtype=np.float32)
    scores = np.array([b.score for b in found], dtype=np.float32)
    return [found[i] for i in nms(boxes, scores, 0.3)]


def verdict(boxes: list[FaceBox]) -> tuple[int, tuple[float, ...] | None]:
    if not boxes:
        return 0, None
    boxes = sorted(boxes, key=lambda b: -b.area)
    others = [b for b in boxes[1:] if b.width >= MIN_RELATIVE * boxes[0].width]
    return min(2, 1 + len(others)), boxes[0].xyxy


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(area, 1e-9)


def decide(short: list[FaceBox], full: list[FaceBox], rgb: np.ndarray, t: float | None):
    """The merged boxes under a policy: t None = both always; else cond(t)."""
    if t is None:
        return merge(short + full), True
    if short:
        widest = max(b.width for b in short) * 128 / max(rgb.shape[:2])
        if widest >= t:
            return merge(short), False
    return merge(short + full), True


def two_person(a: np.ndarray, b: np.ndarray, ratio: float, size: tuple[int, int]) -> np.ndarray:
    """Photo a in the left half, photo b (``ratio`` times a's size) in the right half."""
    w, h = size
    canvas = np.full((h, w, 3), 110, np.uint8)
    side = min(int(h * 0.8), w // 2 - 8)
    sb = max(8, int(side * ratio))
    for img, sz, x in ((a, side, (w // 2 - side) // 2), (b, sb, w // 2 + (w // 2 - sb) // 2)):
        y = (h - sz) // 2
        canvas[y : y + sz, x : x + sz] = cv2.resize(img, (sz, sz), interpolation=cv2.INTER_AREA)
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    short_m, full_m = BlazeFaceDetector("short"), BlazeFaceDetector("full")
    policies: list[float | None] = [None, *THRESHOLDS]
    images = list_faces(DATA, "all")
    rng = random.Random(0)
    cases: list[tuple[str, np.ndarray]] = [
        ("photo", decode_image(i.path.read_bytes())) for i in images
    ]
    for k in range(args.pairs):
        a, b = rng.sample(images, 2)
        ratio = rng.uniform(0.55, 1.0)
        size = (640, 480) if k % 2 == 0 else (320, 240)
        ra, rb = decode_image(a.path.read_bytes()), decode_image(b.path.read_bytes())
        cases.append((f"two@{size[0]}", two_person(ra, rb, ratio, size)))
    times = {"short": [], "full": []}
    stats: dict[str, dict[str, dict[str, float]]] = {}
    for kind, rgb in cases:
        t0 = time.perf_counter()
        s = short_m.detect(rgb)
        t1 = time.perf_counter()
        f = full_m.detect(rgb)
        t2 = time.perf_counter()
        times["short"].append((t1 - t0) * 1000)
        times["full"].append((t2 - t1) * 1000)
        ref_n, ref_box = verdict(decide(s, f, rgb, None)[0])
        for p in policies:
            key = "both" if p is None else f"cond{p}"
            boxes, ran_full = decide(s, f, rgb, p)
            n, box = verdict(boxes)
            st = stats.setdefault(kind, {}).setdefault(
                key, {"n": 0, "same": 0, "ran_full": 0, "none": 0, "one": 0, "several": 0}
            )
            st["n"] += 1
            st["ran_full"] += ran_full
            st[("none", "one", "several")[n]] += 1
            st["same"] += n == ref_n and (box is None or iou(box, ref_box) > 0.5)
        # short alone
        n, box = verdict(merge(s))
        st = stats[kind].setdefault(
            "short", {"n": 0, "same": 0, "ran_full": 0, "none": 0, "one": 0, "several": 0}
        )
        st["n"] += 1
        st[("none", "one", "several")[n]] += 1
        st["same"] += n == ref_n and (box is None or iou(box, ref_box) > 0.5)
    out = {
        "median_ms": {k: round(float(np.median(v)), 2) for k, v in times.items()},
        "stats": stats,
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    print("median ms", out["median_ms"])
    for kind, by in stats.items():
        for key, st in by.items():
            print(
                f"{kind:9s} {key:8s} n={st['n']:4d} same-as-both={st['same']:4d} "
                f"ran_full={st['ran_full']:4d} none={st['none']:3d} one={st['one']:4d} "
                f"several={st['several']:3d}"
            )


if __name__ == "__main__":
    main()
