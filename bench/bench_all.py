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
import bench_speed  # noqa: E402

# Peak memory of a fresh process (VmHWM: ru_maxrss would carry the parent's peak across the
# fork), after loading every model the service loads, then after one verify and one liveness
# check of a 5 s 720p video.
SERVICE_MEMORY = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
from facegate.engine.pipeline import FaceEngine
from facegate.liveness.challenge import ChallengePolicy, create_challenge
from facegate.liveness.check import LivenessChecker
engine = FaceEngine(num_threads=2)
checker = LivenessChecker(engine, num_threads=2)
loaded = peak_mb()
import bench_engine, bench_liveness
engine.analyse(bench_engine.photos_640x480(3)[-1], multiple="largest")
name = "liveportrait_d18.mp4"
video = bench_liveness.to_720p(bench_liveness.VIDEOS / name)
challenge = create_challenge(ChallengePolicy(min_actions=1, flash=True), now=time.time())
checker.check(video, challenge)
print(json.dumps({"models_loaded_mb": loaded, "after_verify_and_liveness_mb": peak_mb()}))
"""


def dlib_resnet_times() -> dict:
    """The same chip through dlib's ResNet: onnxruntime (1 and 2 threads) and dlib-bin."""
    import numpy as np

    from facegate.engine.embed import DlibEmbedder

    chip = [np.random.default_rng(0).integers(0, 256, (150, 150, 3), dtype=np.uint8)]
    out = {}
    for label, embedder, runs in (
        ("onnxruntime, 1 thread", DlibEmbedder("onnx", 1), 40),
        ("onnxruntime, 2 threads", DlibEmbedder("onnx", 2), 40),
        ("dlib-bin", DlibEmbedder("dlib"), 8),
    ):
        embedder.descriptors(chip)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            embedder.descriptors(chip)
            times.append((time.perf_counter() - t) * 1000)
        out[label] = round(sorted(times)[len(times) // 2], 2)
    return out


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
    small = bench_speed.photos_small(args.images)  # 250x250, as most of ../shared/data/faces
    r["verify_1t"] = bench_engine.bench_ours(images, 1, "default")
    r["verify_2t"] = bench_engine.bench_ours(images, 2, "default")
    r["verify_small_1t"] = bench_engine.bench_ours(small, 1, "default")
    r["verify_small_2t"] = bench_engine.bench_ours(small, 2, "default")
    # the single models the default fuses, for the choice of default (README "Speed")
    r["verify_sface_2t"] = bench_engine.bench_ours(images, 2, "sface")
    r["verify_mobilefacenet_2t"] = bench_engine.bench_ours(images, 2, "mobilefacenet")
    # the alternative embedder: dlib's ResNet, now on onnxruntime (engine/dlib_onnx.py)
    r["verify_dlib_1t"] = bench_engine.bench_ours(images, 1, "dlib")
    r["verify_dlib_2t"] = bench_engine.bench_ours(images, 2, "dlib")
    r["dlib_resnet_ms_per_chip"] = dlib_resnet_times()
    try:
        r["face_recognition"] = bench_engine.bench_face_recognition(images)
        r["face_recognition_small"] = bench_engine.bench_face_recognition(small)
    except ImportError:
        r["face_recognition"] = r["face_recognition_small"] = None
    r["images_per_s"] = {
        "1 process": round(bench_engine.throughput(images, 1, "default"), 1),
        "2 processes": round(bench_engine.throughput(images, 2, "default"), 1),
        # the service's default: one worker per core, two interpreter threads each
        "2 processes x 2 threads": round(
            bench_engine.throughput(images, 2, "default", threads=2), 1
        ),
    }
    r["liveness_5s_720p"] = liveness_times(args.runs, 2)
    memory = subprocess.run(
        [sys.executable, "-c", SERVICE_MEMORY, str(BENCH)], capture_output=True, text=True
    )
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
    rows.append(("verify, 250x250 photos, 1 thread (median ms)", total("verify_small_1t"), "-"))
    rows.append(("verify, 250x250 photos, 2 threads (median ms)", total("verify_small_2t"), "-"))
    rows.append(("verify, sface embedder, 2 threads (median ms)", total("verify_sface_2t"), "-"))
    rows.append(
        (
            "verify, mobilefacenet embedder, 2 threads (median ms)",
            total("verify_mobilefacenet_2t"),
            "-",
        )
    )
    rows.append(("verify, dlib embedder, 1 thread (median ms)", total("verify_dlib_1t"), "-"))
    rows.append(("verify, dlib embedder, 2 threads (median ms)", total("verify_dlib_2t"), "-"))
    for k, v in r["dlib_resnet_ms_per_chip"].items():
        rows.append((f"dlib ResNet, one chip, {k} (median ms)", v, "-"))
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
        small = total("face_recognition_small")
        rows.append(("face_recognition, 250x250 photos (median ms)", small, "-"))
        rows.append(
            (
                "speed-up vs face_recognition, 250x250",
                f"{small / total('verify_small_1t'):.1f}x",
                "-",
            )
        )
    stages = r["verify_2t"]["stages_ms"]
    rows.append(
        (
            "verify stages, 2 threads (median ms)",
            ", ".join(f"{k} {v['median']}" for k, v in stages.items() if k != "total"),
            "-",
        )
    )
    for k, v in r["images_per_s"].items():
        rows.append((f"images/s, {k}", v, base["images_per_s"].get(k, "-")))
    for name, v in r["liveness_5s_720p"].items():
        lo, hi = base["liveness_5s_720p_total_ms"][name.split(" ")[0]]
        rows.append(
            (
                f"liveness {name} (median / max ms)",
                f"{v['median_ms']} / {v['max_ms']}",
                f"{lo}-{hi}",
            )
        )
    memory = r["service_models_loaded"]
    rows.append(("service process, models loaded: peak RSS MB", memory["models_loaded_mb"], "-"))
    rows.append(
        (
            "same, after one verify + one liveness check: peak RSS MB",
            memory["after_verify_and_liveness_mb"],
            "-",
        )
    )
    print("\n| measure | now | before |\n|---|---|---|")
    for name, now, before in rows:
        print(f"| {name} | {now} | {before} |")


if __name__ == "__main__":
    sys.exit(main())
