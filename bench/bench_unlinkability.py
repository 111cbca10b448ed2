"""Unlinkability of protected templates across tenants: D_sys on all of ../shared/data/faces.

Every image is embedded once; tenant A enrols each person's first photo, tenant B their second
(and, the worst case, the same first photo), each under its own secret transform. Mated linkage
scores are same-person cross-tenant cosines, non-mated are different-person ones. Printed next to
the same measurement on unprotected embeddings, and next to the estimator's noise floor (two
random sets of non-mated scores).

    .venv/bin/python bench/bench_unlinkability.py
"""

from __future__ import annotations

import json
import secrets
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "faces"


def main() -> int:
    from facegate.engine.pipeline import FaceEngine
    from facegate.eval.faces import embed_images, list_faces
    from facegate.protection.metrics import d_sys
    from facegate.protection.transform import protect

    data = embed_images(FaceEngine(), list_faces(DATA))
    by_person: dict[str, list[int]] = defaultdict(list)
    for i, who in enumerate(data.identities):
        by_person[who].append(i)
    people = sorted(p for p, idx in by_person.items() if len(idx) >= 2)
    seed_a, seed_b = secrets.token_bytes(32), secrets.token_bytes(32)
    out: dict = {"people": len(people)}
    rng = np.random.default_rng(0)
    for case, second in (("different photos", 1), ("same photo", 0)):
        a = np.stack([data.vectors[by_person[p][0]] for p in people])
        b = np.stack([data.vectors[by_person[p][second]] for p in people])
        off = ~np.eye(len(people), dtype=bool)
        for name, (x, y) in {
            "unprotected": (a, b),
            "protected": (
                np.stack([protect(v, seed_a, 1) for v in a]),
                np.stack([protect(v, seed_b, 1) for v in b]),
            ),
        }.items():
            s = x @ y.T
            mated, non_mated = np.diag(s), s[off]
            out[f"{case}: {name}"] = {
                "d_sys": round(d_sys(mated, non_mated), 4),
                "mated_mean": round(float(mated.mean()), 4),
                "non_mated_mean": round(float(non_mated.mean()), 4),
            }
        floor = rng.permutation(s[off])[: len(people)]
        out[f"{case}: noise floor (non-mated vs non-mated)"] = round(d_sys(floor, s[off]), 4)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
