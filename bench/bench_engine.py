"""Face-engine benchmark: per-stage latency, end-to-end verify latency, throughput, accuracy.

Runs on real photos from ../shared/data/faces, scaled to 640x480 (cover and centre-crop) and
re-encoded as JPEG, and compares our default path with the ``face_recognition`` package's
default path on the same images in the same run.

    .venv/bin/pip install --no-deps face_recognition      # bench environment only
    .venv/bin/python bench/bench_engine.py [--images 60] [--accuracy]

--accuracy also embeds the 'eval' identities with both paths and prints EER and FNMR@FMR.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import multiprocessing as mp
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
STAGES = ("decode", "detect", "landmarks", "align", "quality", "embed")


def photos_640x480(n: int, seed: int = 0) -> list[bytes]:
    """n real colour photos (non-LFW sources: larger, in colour), as 640x480 JPEG bytes."""
    with (DATA / "faces" / "labels.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["color"] != "grayscale"]
    rows = random.Random(seed).sample(rows, min(n, len(rows)))
    out = []
    for r in rows:
        img = Image.open(DATA / r["file"]).convert("RGB")
        scale = max(640 / img.width, 480 / img.height)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)
        left, top = (img.width - 640) // 2, (img.height - 480) // 2
        buf = io.BytesIO()
        img.crop((left, top, left + 640, top + 480)).save(buf, "JPEG", quality=92)
        out.append(buf.getvalue())
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def bench_ours(images: list[bytes], threads: int, embedder: str) -> dict:
    from facegate.engine.pipeline import FaceEngine
    from facegate.errors import FacegateError

    engine = FaceEngine(embedder=embedder, num_threads=threads)
    for data in images[:3]:  # warm-up
        with contextlib.suppress(FacegateError):
            engine.analyse(data, multiple="largest")
    stages: dict[str, list[float]] = {s: [] for s in (*STAGES, "total")}
    failures = 0
    for data in images:
        t = time.perf_counter()
        try:
            res = engine.analyse(data, multiple="largest")
        except FacegateError:
            failures += 1
            continue
        stages["total"].append((time.perf_counter() - t) * 1000)
        for s in STAGES:
            stages[s].append(res.timings_ms.get(s, 0.0))
    return {
        "path": f"facegate ({engine.embedder.name}, {threads} thread{'s' if threads > 1 else ''})",
        "failures": failures,
        "stages_ms": {
            s: {"median": round(statistics.median(v), 2), "p95": round(pct(v, 95), 2)}
            for s, v in stages.items()
            if v
        },
    }


def _fr_one(data: bytes) -> bool:
    import face_recognition

    rgb = face_recognition.load_image_file(io.BytesIO(data))
    boxes = face_recognition.face_locations(rgb)  # HOG, upsample 1: the package's default
    return bool(face_recognition.face_encodings(rgb, boxes))


def bench_face_recognition(images: list[bytes]) -> dict:
    import face_recognition

    for data in images[:2]:
        _fr_one(data)
    stages: dict[str, list[float]] = {"decode": [], "detect": [], "embed": [], "total": []}
    failures = 0
    for data in images:
        t0 = time.perf_counter()
        rgb = face_recognition.load_image_file(io.BytesIO(data))
        t1 = time.perf_counter()
        boxes = face_recognition.face_locations(rgb)
        t2 = time.perf_counter()
        enc = face_recognition.face_encodings(rgb, boxes[:1])
        t3 = time.perf_counter()
        if not enc:
            failures += 1
            continue
        for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            stages[k].append(v * 1000)
    return {
        "path": "face_recognition 1.2.3 default (HOG upsample 1, 5-point, ResNet)",
        "failures": failures,
        "stages_ms": {
            s: {"median": round(statistics.median(v), 2), "p95": round(pct(v, 95), 2)}
            for s, v in stages.items()
        },
    }


_WORKER = None


def _init_worker(embedder: str, threads: int = 1) -> None:
    global _WORKER
    from facegate.engine.pipeline import FaceEngine

    _WORKER = FaceEngine(embedder=embedder, num_threads=threads)


def _work(data: bytes) -> bool:
    from facegate.errors import FacegateError

    try:
        _WORKER.analyse(data, multiple="largest")  # type: ignore[union-attr]
        return True
    except FacegateError:
        return False


def throughput(
    images: list[bytes], processes: int, embedder: str, rounds: int = 3, threads: int = 1
) -> float:
    """Images per second with ``processes`` worker processes (models loaded once per process),
    each with ``threads`` interpreter threads."""
    ctx = mp.get_context("fork")
    with ctx.Pool(processes, initializer=_init_worker, initargs=(embedder, threads)) as pool:
        pool.map(_work, images[: processes * 2])
        t = time.perf_counter()
        for _ in range(rounds):
            pool.map(_work, images, chunksize=4)
        return rounds * len(images) / (time.perf_counter() - t)


def accuracy() -> dict:
    """EER and FNMR@FMR on the 'eval' identities: our default path vs face_recognition's."""
    import face_recognition

    from facegate.engine.pipeline import FaceEngine
    from facegate.eval.det import verification_report
    from facegate.eval.faces import EmbeddedSet, embed_images, list_faces, pair_scores

    images = list_faces(DATA / "faces", "eval")
    ours = embed_images(FaceEngine(), images)
    vecs, ids, fails = [], [], 0
    for item in images:
        rgb = face_recognition.load_image_file(str(item.path))
        enc = face_recognition.face_encodings(rgb)  # its default path, first face
        if not enc:
            fails += 1
            continue
        v = np.asarray(enc[0], np.float32)
        vecs.append(v / np.linalg.norm(v))
        ids.append(item.identity)
    theirs = EmbeddedSet(np.stack(vecs), np.array(ids), {"no_face": fails}, len(images))
    out = {}
    for name, data in (("facegate", ours), ("face_recognition", theirs)):
        rep = verification_report(*pair_scores(data))
        out[name] = {
            "failure_to_enrol": round(data.failure_to_enrol, 4),
            **{k: v for k, v in rep.to_dict().items() if k in ("eer", "fnmr_at_fmr", "pairs")},
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--embedder", default="default")
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"bench: {DATA} is missing")
    images = photos_640x480(args.images)
    cv2.setNumThreads(1)
    results: dict = {"images": len(images), "size": "640x480 JPEG", "cpu_count": os.cpu_count()}
    results["ours_1t"] = bench_ours(images, 1, args.embedder)
    results["ours_2t"] = bench_ours(images, 2, args.embedder)
    results["face_recognition"] = bench_face_recognition(images)
    ours = results["ours_1t"]["stages_ms"]["total"]["median"]
    theirs = results["face_recognition"]["stages_ms"]["total"]["median"]
    results["speedup_vs_face_recognition"] = round(theirs / ours, 2)
    results["images_per_s"] = {
        "1 process": round(throughput(images, 1, args.embedder), 1),
        "2 processes": round(throughput(images, 2, args.embedder), 1),
    }
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.accuracy:
        results["accuracy_eval_split"] = accuracy()
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    return 0


def print_table(r: dict) -> None:
    print(
        "\n| stage | "
        + " | ".join(r[k]["path"] for k in ("ours_1t", "ours_2t", "face_recognition"))
        + " |"
    )
    print("|---|---|---|---|")
    for s in (*STAGES, "total"):
        cells = []
        for k in ("ours_1t", "ours_2t", "face_recognition"):
            v = r[k]["stages_ms"].get(s)
            cells.append(f"{v['median']} / {v['p95']}" if v else "-")
        print(f"| {s} (median / p95 ms) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
