"""Streamed liveness: bandwidth and last-frame-to-decision latency of the reference client, over
the streams of ``facegate eval stream`` (bona fide under simulated jitter, the streaming
attacker against its processing delay), whose acceptance table it prints alongside.

Why here and not in the test suite: each stream plays in real time (6-10 s), so the sweep takes
minutes. The streams, the throwaway server and the attacker are the package's
(``facegate.eval.stream``, ``facegate.attack.stream``); this script only adds the transport
figures the README quotes: bytes per second sent and the time from the last frame to the
decision.

    python bench/bench_stream.py [--data ../shared/data] [--attempts 4] [--report FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]


def transport(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Bandwidth and latency over every stream that sent frames, split by kind (the attacker's
    640x480 frames are larger than the client's 480 px wide ones)."""
    ok = [r for r in rows if r["client"] and r["client"]["frames_sent"]]
    latency = [r["client"]["last_frame_to_decision_ms"] for r in ok]
    return {
        "streams": len(ok),
        "bytes_per_s_median": {
            kind: float(np.median([r["client"]["bytes_per_s"] for r in ok if r["kind"] == kind]))
            for kind in sorted({r["kind"] for r in ok})
        },
        "last_frame_to_decision_ms": {
            "median": float(np.median(latency)) if latency else None,
            "max": float(np.max(latency)) if latency else None,
        },
    }


def main() -> None:
    from facegate.eval.stream import parse_delays, parse_jitters, run_stream_evaluation

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--attempts", type=int, default=4, help="per delay / jitter setting")
    parser.add_argument("--delays", default="0,300,600,1000,2000")
    parser.add_argument("--jitters", default="0:0,150:100,300:250")
    parser.add_argument("--report")
    args = parser.parse_args()
    report = run_stream_evaluation(
        Path(args.data),
        delays=parse_delays(args.delays),
        jitters=parse_jitters(args.jitters),
        attempts=args.attempts,
        progress=lambda row: print(json.dumps(row), flush=True),
    )
    summary = {
        "apcer": report["apcer"],
        "bpcer": report["bpcer"],
        "bound": report["bound"],
        **transport(report["rows"]),
    }
    print(json.dumps(summary, indent=2))
    if args.report:
        Path(args.report).write_text(json.dumps({"summary": summary, "rows": report["rows"]}))


if __name__ == "__main__":
    main()
