"""Verify latency per embedder and per stage, on 640x480 and on small (250x250) photos, against
face_recognition's default path on the same images, in one sitting with alternating rounds
(this 2-core machine drifts by up to 30% over minutes, so only same-sitting ratios are fair).

    .venv/bin/pip install --no-deps face_recognition      # bench environment only
    .venv/bin/python bench/bench_speed.py [--images 60] [--rounds 2] [--json reports/speed.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
import time
from pathlib import Path

import cv2

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import bench_engine  # noqa: E402

EMBEDDERS = ("mobilefacenet", "sface", "fused")


def photos_small(n: int, seed: int = 0) -> list[bytes]:
    """n LFW photos as stored (250x250 JPEG): the size most of ../shared/data/faces has."""
    with (bench_engine.DATA / "faces" / "labels.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["note"].startswith("LFW image")]
    rows = random.Random(seed).sample(rows, min(n, len(rows)))
    return [(bench_engine.DATA / r["file"]).read_bytes() for r in rows]


def full_range_share(images: list[bytes]) -> float:
    """How often the pipeline's detector ran the full-range BlazeFace model on these images."""
    from facegate.engine.pipeline import BlazeFacePair

    pair = BlazeFacePair()
    from facegate.engine.decode import decode_image

    for data in images:
        pair.detect(decode_image(data))
    return pair.full_runs / max(len(images), 1)


def arrangements(rounds: int = 25) -> dict[str, dict[str, float]]:
    """The fused embedding stage alone, one random chip: each model alone, the two in sequence,
    and the two concurrently with 1 or 2 threads each (medians and minimums, ms)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from facegate.engine.embed import MobileFaceNetEmbedder
    from facegate.engine.sface import SFaceEmbedder

    chip = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    m1, m2 = MobileFaceNetEmbedder(num_threads=1), MobileFaceNetEmbedder(num_threads=2)
    s1, s2 = SFaceEmbedder(num_threads=1), SFaceEmbedder(num_threads=2)
    pool = ThreadPoolExecutor(1)

    def conc(m: MobileFaceNetEmbedder, s: SFaceEmbedder) -> None:
        job = pool.submit(s.embed_chip, chip)
        m.embed_chip(chip)
        job.result()

    cases = {
        "mobilefacenet 1t": lambda: m1.embed_chip(chip),
        "mobilefacenet 2t": lambda: m2.embed_chip(chip),
        "sface 1t": lambda: s1.embed_chip(chip),
        "sface 2t": lambda: s2.embed_chip(chip),
        "sequential 2t + 2t": lambda: (m2.embed_chip(chip), s2.embed_chip(chip)),
        "concurrent 1t || 1t": lambda: conc(m1, s1),
        "concurrent 2t || 2t": lambda: conc(m2, s2),
        "concurrent mfn 1t || sface 2t": lambda: conc(m1, s2),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for f in cases.values():
        f()
    for _ in range(rounds):
        for k, f in cases.items():
            t = time.perf_counter()
            f()
            times[k].append((time.perf_counter() - t) * 1000)
    return {
        k: {"median": round(statistics.median(v), 1), "min": round(min(v), 1)}
        for k, v in times.items()
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--embedders", default=",".join(EMBEDDERS))
    ap.add_argument("--json")
    ap.add_argument("--arrangements", action="store_true", help="only the fused stage's options")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    if args.arrangements:
        print(json.dumps(arrangements(), indent=1))
        return 0
    sets = {
        "640x480": bench_engine.photos_640x480(args.images),
        "250x250": photos_small(args.images),
    }
    threads = [int(t) for t in args.threads.split(",")]
    names = args.embedders.split(",")
    runs: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        for size, images in sets.items():
            for name in names:
                for t in threads:
                    runs.setdefault(f"{size} {name} {t}t", []).append(
                        bench_engine.bench_ours(images, t, name)
                    )
            runs.setdefault(f"{size} face_recognition 1t", []).append(
                bench_engine.bench_face_recognition(images)
            )
    out: dict = {"images": args.images, "rounds": args.rounds, "results": {}}
    for key, results in runs.items():
        stages = results[0]["stages_ms"].keys()
        out["results"][key] = {
            s: [r["stages_ms"][s]["median"] for r in results] for s in stages
        } | {"failures": [r["failures"] for r in results]}
    out["full_range_share"] = {size: full_range_share(images) for size, images in sets.items()}
    for size in sets:
        fr = statistics.median(out["results"][f"{size} face_recognition 1t"]["total"])
        for name in names:
            for t in threads:
                ours = statistics.median(out["results"][f"{size} {name} {t}t"]["total"])
                out["results"][f"{size} {name} {t}t"]["speedup_vs_face_recognition"] = round(
                    fr / ours, 2
                )
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print("\n| images | path | decode | detect | landmarks | align | quality | embed | total |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key, r in out["results"].items():
        size, rest = key.split(" ", 1)
        cells = [
            "/".join(f"{v:.1f}" for v in r[s]) if s in r else "-"
            for s in (*bench_engine.STAGES, "total")
        ]
        sp = r.get("speedup_vs_face_recognition")
        print(f"| {size} | {rest} | " + " | ".join(cells) + (f" ({sp}x) |" if sp else " |"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
