"""The whole speed picture in one run: verify stages and throughput (ours vs face_recognition,
same images), liveness decision time (same videos), and the service's memory with every model
loaded, next to the previous numbers in bench/baseline.json.

    .venv/bin/pip install --no-deps face_recognition      # bench environment only
    .venv/bin/python bench/bench_all.py [--images 60] [--runs 3] [--json reports/bench-all.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import bench_engine  # noqa: E402
import bench_liveness  # noqa: E402

SERVICE_MEMORY = """
import resource, json
from facegate.engine.pipeline import FaceEngine
from facegate.liveness.check import LivenessChecker
engine = FaceEngine(num_threads=2)
checker = LivenessChecker(engine, num_threads=2)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def liveness_times(runs: int, threads: int) -> dict:
    from facegate.engine.pipeline import FaceEngine
    from facegate.liveness.challenge import ChallengePolicy, create_challenge
    from facegate.liveness.check import LivenessChecker

    checker = LivenessChecker(FaceEngine(num_threads=threads), num_threads=threads)
    out = {}
    for name, actions in bench_liveness.CASES.items():
        data = bench_liveness.to_720p(bench_liveness.VIDEOS / name)
        for flash in (False, True):  # the capture page's challenges carry a flash
            policy = ChallengePolicy(min_actions=1, flash=flash)
            totals = []
            for k in range(runs + 1):
                ch = create_challenge(policy, now=time.time(), actions=actions)
                t = time.perf_counter()
                checker.check(data, ch)
                if k:  # the first run warms up
                    totals.append((time.perf_counter() - t) * 1000)
            totals.sort()
            out[name + (" +flash" if flash else "")] = {
                "median_ms": round(totals[len(totals) // 2], 1),
                "max_ms": round(totals[-1], 1),
            }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    images = bench_engine.photos_640x480(args.images)
    r: dict = {"cpu_count": os.cpu_count(), "images": len(images)}
    r["verify_1t"] = bench_engine.bench_ours(images, 1, "default")
    r["verify_2t"] = bench_engine.bench_ours(images, 2, "default")
    try:
        r["face_recognition"] = bench_engine.bench_face_recognition(images)
    except ImportError:
        r["face_recognition"] = None
    r["images_per_s"] = {
        "1 process": round(bench_engine.throughput(images, 1, "default"), 1),
        "2 processes": round(bench_engine.throughput(images, 2, "default"), 1),
    }
    r["liveness_5s_720p"] = liveness_times(args.runs, 2)
    memory = subprocess.run([sys.executable, "-c", SERVICE_MEMORY], capture_output=True, text=True)
    r["service_models_loaded"] = json.loads(memory.stdout.strip().splitlines()[-1])
    r["baseline"] = json.loads((BENCH / "baseline.json").read_text())
    print(json.dumps(r, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    print_table(r)
    return 0


def print_table(r: dict) -> None:
    def total(key: str) -> float:
        return r[key]["stages_ms"]["total"]["median"]

    base = r["baseline"]
    rows = [
        (
            "verify, 1 thread (median ms)",
            total("verify_1t"),
            base["verify_total_median_ms"]["1 thread"],
        ),
        (
            "verify, 2 threads (median ms)",
            total("verify_2t"),
            base["verify_total_median_ms"]["2 threads"],
        ),
    ]
    if r["face_recognition"]:
        theirs = total("face_recognition")
        rows.append(
            (
                "face_recognition (median ms)",
                theirs,
                base["verify_total_median_ms"]["face_recognition"],
            )
        )
        rows.append(("speed-up vs face_recognition", f"{theirs / total('verify_1t'):.1f}x", "7.1x"))
    for k, v in r["images_per_s"].items():
        rows.append((f"images/s, {k}", v, base["images_per_s"][k]))
    for name, v in r["liveness_5s_720p"].items():
        lo, hi = base["liveness_5s_720p_total_ms"][name.split(" ")[0]]
        rows.append(
            (
                f"liveness {name} (median / max ms)",
                f"{v['median_ms']} / {v['max_ms']}",
                f"{lo}-{hi}",
            )
        )
    rows.append(
        (
            "service, all models loaded: peak RSS MB",
            round(r["service_models_loaded"]["peak_rss_mb"]),
            "-",
        )
    )
    print("\n| measure | now | before |\n|---|---|---|")
    for name, now, before in rows:
        print(f"| {name} | {now} | {before} |")


if __name__ == "__main__":
    sys.exit(main())
