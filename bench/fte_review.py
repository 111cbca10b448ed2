"""Failure to enrol on ../shared/data/faces, per reason, and what each refused photo would have
done had it been let in: its genuine scores against the same person's accepted photos, at the
shipped fmr_1e-3 threshold of the embedder.

    .venv/bin/python bench/fte_review.py [--embedder fused] [--json reports/fte.json]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from facegate.engine.compare import operating_point
from facegate.engine.pipeline import FaceEngine
from facegate.errors import FacegateError
from facegate.eval.faces import identity_split, list_faces

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="default")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    engine = FaceEngine(embedder=args.embedder)
    threshold = operating_point(engine.space_id, "fmr_1e-3").threshold
    accepted: dict[str, list[np.ndarray]] = defaultdict(list)
    refused: list[dict] = []
    reasons: Counter[str] = Counter()
    per_split: Counter[str] = Counter()
    images = list_faces(DATA, "all")
    for item in images:
        data = item.path.read_bytes()
        try:
            res = engine.analyse(data, multiple="largest", enforce_quality=False)
        except FacegateError as exc:  # no face at all, or the mesh says it is not a face
            reasons[exc.code] += 1
            per_split[f"{identity_split(item.identity)}:{exc.code}"] += 1
            refused.append({"file": item.path.name, "identity": item.identity, "reason": exc.code})
            continue
        failed = [c for c in res.quality if not c.passed]
        if not failed:
            accepted[item.identity].append(res.embedding.vector)
            continue
        reasons[failed[0].reason] += 1
        per_split[f"{identity_split(item.identity)}:{failed[0].reason}"] += 1
        refused.append(
            {
                "file": item.path.name,
                "identity": item.identity,
                "reason": failed[0].reason,
                "values": {c.name: round(c.value, 1) for c in failed},
                "vector": res.embedding.vector,
            }
        )
    for r in refused:
        vec = r.pop("vector", None)
        others = accepted.get(r["identity"], [])
        if vec is not None and others:
            scores = [float(vec @ o) for o in others]
            r["genuine_scores"] = [round(s, 3) for s in scores]
            r["would_match_at_fmr_1e-3"] = sum(s >= threshold for s in scores)
    out = {
        "embedder": engine.embedder.name,
        "images": len(images),
        "failure_to_enrol": sum(reasons.values()) / len(images),
        "by_reason": dict(reasons),
        "by_split_and_reason": dict(per_split),
        "threshold_fmr_1e-3": threshold,
        "refused": refused,
    }
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
