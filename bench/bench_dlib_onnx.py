"""dlib's ResNet on onnxruntime against dlib itself: agreement on real faces and speed.

Agreement: every photo of ../shared/data/faces (or the first --limit), dlib's own chip, both
runtimes (tests/data/test_dlib_agreement.py asserts the same). Speed: one chip and a batch of 8,
1 and 2 threads, medians; and the time to build the graph when the embedder loads.

    .venv/bin/python bench/bench_dlib_onnx.py [--limit N] [--json reports/dlib-onnx.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "data" / "faces"


def median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 2)


def speed() -> dict:
    from facegate.engine.dlib_format import read_dlib_resnet
    from facegate.engine.dlib_onnx import DlibOnnxNet
    from facegate.engine.embed import DlibEmbedder
    from facegate.engine.models import dlib_model

    data = dlib_model("dlib_face_recognition_resnet_model_v1.dat").path.read_bytes()
    t = time.perf_counter()
    net = read_dlib_resnet(data)
    parsed = time.perf_counter()
    DlibOnnxNet(net)
    built = time.perf_counter()
    rng = np.random.default_rng(0)
    chips = list(rng.integers(0, 256, (8, 150, 150, 3), dtype=np.uint8))
    out: dict = {
        "load_ms": {
            "read .dat": round((parsed - t) * 1000, 1),
            "build graph + session": round((built - parsed) * 1000, 1),
        }
    }
    for threads in (1, 2):
        onnx = DlibEmbedder(runtime="onnx", num_threads=threads)
        out[f"onnx_{threads}t"] = {
            "1 chip": median_ms(lambda e=onnx: e.descriptors(chips[:1]), 40),
            "8 chips": median_ms(lambda e=onnx: e.descriptors(chips), 10),
        }
    dlib = DlibEmbedder(runtime="dlib")
    out["dlib"] = {
        "1 chip": median_ms(lambda: dlib.descriptors(chips[:1]), 10),
        "8 chips": median_ms(lambda: dlib.descriptors(chips), 3),
    }
    return out


def agreement(limit: int | None) -> dict:
    from facegate.eval.dlib_agreement import check_agreement

    with (FACES / "labels.csv").open() as fh:
        paths = [FACES.parent / row["file"] for row in csv.DictReader(fh)]
    paths = paths[:limit] if limit else paths
    t = time.perf_counter()
    results = check_agreement(paths, workers=2)
    worst = min(results, key=lambda r: r.cosine)
    return {
        "photos": len(results),
        "face_found": sum(r.face_found for r in results),
        "min_cosine": worst.cosine,
        "worst_photo": str(Path(worst.path).relative_to(FACES.parent)),
        "max_abs_diff": max(r.max_abs_diff for r in results),
        "median_ms_per_chip": {
            "onnx": round(statistics.median(r.onnx_ms for r in results), 2),
            "dlib": round(statistics.median(r.dlib_ms for r in results), 2),
        },
        "seconds": round(time.perf_counter() - t, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="only the first N photos")
    parser.add_argument("--json")
    args = parser.parse_args()
    if not (FACES / "labels.csv").is_file():
        print(f"shared data missing: {FACES}", file=sys.stderr)
        return 2
    r = {"speed_ms": speed(), "agreement": agreement(args.limit)}
    print(json.dumps(r, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
