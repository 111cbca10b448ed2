"""Every embedder on the same faces and the same pairs, and the fusion weight chosen on `tune`.

Each photo of ../shared/data/faces goes once through decode, BlazeFace, the mesh and the quality
gate (the same gate for every embedder, so every row has the same pairs); its 112x112 chip then
goes through MobileFaceNet (with and without the flip), SFace (with and without the flip), and
dlib's ResNet on dlib's own chip. Fusion scores are ``w * cos_mfn + (1 - w) * cos_sface`` (the
``fused`` embedder's cosine with w = w1^2); w is chosen on `tune` only, by the lowest
FNMR@1e-3 + FNMR@1e-4, and reported on `eval`.

    .venv/bin/python bench/eval_embedders.py ../shared/data/faces --json reports/embedders.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from facegate.engine.align import align_face
from facegate.engine.decode import decode_image
from facegate.engine.embed import DlibEmbedder, MobileFaceNetEmbedder, l2_normalise
from facegate.engine.pipeline import FaceEngine
from facegate.engine.sface import SFaceEmbedder
from facegate.errors import FacegateError
from facegate.eval.det import fmr_fnmr, verification_report
from facegate.eval.faces import identity_split, list_faces

MODELS = ("mobilefacenet_flip", "mobilefacenet", "sface", "sface_flip", "dlib")
WEIGHTS = [round(w, 2) for w in np.arange(0.0, 1.0001, 0.05)]


def embed_all(root: Path, with_dlib: bool) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    engine = FaceEngine(embedder="mobilefacenet")
    mfn: MobileFaceNetEmbedder = engine.embedder  # type: ignore[assignment]
    sface = SFaceEmbedder(flip=True)
    dlib = DlibEmbedder() if with_dlib else None
    vecs: dict[str, list[np.ndarray]] = {m: [] for m in MODELS}
    ids, failures = [], {}
    images = list_faces(root, "all")
    for k, item in enumerate(images):
        try:
            rgb = decode_image(item.path.read_bytes())
            res = engine.analyse(rgb, multiple="largest")
        except FacegateError as exc:
            key = f"{identity_split(item.identity)}:{exc.code}"
            failures[key] = failures.get(key, 0) + 1
            continue
        chip = align_face(rgb, res.landmarks.five, 112)
        raw = mfn.embed_chips_raw(chip, chip[:, ::-1])
        vecs["mobilefacenet_flip"].append(res.embedding.vector)
        vecs["mobilefacenet"].append(l2_normalise(raw[0]))
        sf = sface.raw([chip, chip[:, ::-1]])
        vecs["sface"].append(l2_normalise(sf[0]))
        vecs["sface_flip"].append(l2_normalise(l2_normalise(sf[0]) + l2_normalise(sf[1])))
        if dlib is not None:
            vecs["dlib"].append(dlib.embed(rgb, res.box, res.landmarks))
        ids.append(item.identity)
        if k % 100 == 0:
            print(f"{k}/{len(images)}", file=sys.stderr)
    out = {m: np.stack(v) for m, v in vecs.items() if v}
    return out, np.array(ids), failures


def pairs(ids: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    keep = np.flatnonzero([identity_split(i) == split for i in ids])
    iu, ju = np.triu_indices(len(keep), 1)
    a, b = keep[iu], keep[ju]
    same = ids[a] == ids[b]
    return a[same], b[same], a[~same], b[~same]


def scores(v: np.ndarray, p: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    ga, gb, ia, ib = p
    v = v.astype(np.float64)
    return np.einsum("ij,ij->i", v[ga], v[gb]), np.einsum("ij,ij->i", v[ia], v[ib])


def row(g: np.ndarray, i: np.ndarray) -> dict[str, float]:
    rep = verification_report(g, i)
    return {
        "genuine": len(g),
        "impostor": len(i),
        "eer": rep.eer,
        **{f"fnmr@{k}": v for k, v in rep.fnmr_at_fmr.items()},
        **{f"thr@{k}": v for k, v in rep.thresholds.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-dlib", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    vecs, ids, failures = embed_all(args.root, not args.no_dlib)
    report: dict[str, object] = {"failures": failures, "embed_s": time.perf_counter() - t0}
    split_pairs = {s: pairs(ids, s) for s in ("tune", "eval")}
    sc = {s: {m: scores(v, split_pairs[s]) for m, v in vecs.items()} for s in split_pairs}
    for s in split_pairs:
        report[s] = {m: row(*sc[s][m]) for m in vecs}
    # fusion weight on tune only
    for sf in ("sface", "sface_flip"):
        sweep = {}
        for w in WEIGHTS:
            g = w * sc["tune"]["mobilefacenet_flip"][0] + (1 - w) * sc["tune"][sf][0]
            i = w * sc["tune"]["mobilefacenet_flip"][1] + (1 - w) * sc["tune"][sf][1]
            r = row(g, i)
            sweep[w] = r
        best = min(WEIGHTS, key=lambda w: (sweep[w]["fnmr@1e-3"] + sweep[w]["fnmr@1e-4"], w))
        report[f"tune_sweep_mfn_flip+{sf}"] = {
            str(w): [round(sweep[w][k], 4) for k in ("eer", "fnmr@1e-3", "fnmr@1e-4")]
            for w in WEIGHTS
        }
        report[f"chosen_w_mfn_flip+{sf}"] = best
        for s in split_pairs:
            g = best * sc[s]["mobilefacenet_flip"][0] + (1 - best) * sc[s][sf][0]
            i = best * sc[s]["mobilefacenet_flip"][1] + (1 - best) * sc[s][sf][1]
            report[s][f"fused_w{best}_mfn_flip+{sf}"] = row(g, i)
            if s == "eval":  # the tune thresholds applied on eval
                thr = row(
                    best * sc["tune"]["mobilefacenet_flip"][0] + (1 - best) * sc["tune"][sf][0],
                    best * sc["tune"]["mobilefacenet_flip"][1] + (1 - best) * sc["tune"][sf][1],
                )
                report[f"eval_at_tune_thresholds_{sf}"] = {
                    k: fmr_fnmr(g, i, thr[f"thr@{k}"]) for k in ("1e-2", "1e-3", "1e-4")
                }
    text = json.dumps(report, indent=1, default=float)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    for s in ("tune", "eval"):
        print(f"== {s}")
        for m, r in report[s].items():  # type: ignore[union-attr]
            print(
                f"{m:34s} {r['genuine']:5d}/{r['impostor']:7d} EER {r['eer']:.2%} "
                f"FNMR 1e-2 {r['fnmr@1e-2']:.2%} 1e-3 {r['fnmr@1e-3']:.2%} "
                f"1e-4 {r['fnmr@1e-4']:.2%}"
            )
    print("chosen w:", {k: v for k, v in report.items() if k.startswith("chosen")})
    print("failures:", failures)


if __name__ == "__main__":
    main()
