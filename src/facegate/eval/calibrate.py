"""`facegate eval faces`: measure verification accuracy, and derive the shipped thresholds.

Thresholds are calibrated on the 'tune' identities only; accuracy is reported on whatever split
is evaluated, both at that split's own FMR thresholds (the DET view) and at the thresholds
shipped in the package (what a deployment would actually see).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Iterable
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np

from facegate.engine.compare import load_calibration
from facegate.engine.pipeline import FaceEngine
from facegate.errors import FacegateError, InputError
from facegate.eval.det import FMR_TARGETS, fmr_fnmr, verification_report
from facegate.eval.faces import (
    EmbeddedSet,
    LabelledImage,
    embed_images,
    identity_split,
    list_faces,
    pair_scores,
)
from facegate.eval.report import plot_det, write_json


def _subset(data: EmbeddedSet, split: str) -> EmbeddedSet:
    if split == "all":
        return data
    keep = np.array([identity_split(i) == split for i in data.identities], dtype=bool)
    return EmbeddedSet(data.vectors[keep], data.identities[keep], {}, int(keep.sum()))


def calibration_record(
    space_id: str,
    embedder: str,
    genuine: np.ndarray,
    impostor: np.ndarray,
    data_note: dict[str, Any],
) -> dict[str, Any]:
    rep = verification_report(genuine, impostor)
    return {
        "space_id": space_id,
        "embedder": embedder,
        "score": "cosine similarity of L2-normalised embeddings; match when score >= threshold",
        "operating_points": {
            f"fmr_{k}": {
                "threshold": rep.thresholds[k],
                "fmr_target": FMR_TARGETS[k],
                "fnmr_on_calibration_data": rep.fnmr_at_fmr[k],
            }
            for k in FMR_TARGETS
        },
        "default_operating_point": "fmr_1e-3",
        "data": {
            **data_note,
            "genuine_pairs": rep.genuine_pairs,
            "impostor_pairs": rep.impostor_pairs,
        },
        "created": dt.date.today().isoformat(),
        "tool": f"facegate {metadata.version('facegate')} eval faces --write-calibration",
    }


def _progress_bar(
    desc: str,
) -> Callable[[Iterable[LabelledImage]], Iterable[LabelledImage]] | None:
    """A tqdm progress bar on stderr, or none when tqdm (``facegate[eval]``) is not installed:
    the bar is a convenience, the evaluation does not need it."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None

    def bar(items: Iterable[LabelledImage]) -> Iterable[LabelledImage]:
        return tqdm(items, desc=desc, unit="img", file=sys.stderr)

    return bar


def run_face_evaluation(
    root: Path,
    *,
    embedder: str,
    split: str = "all",
    report_path: Path | None = None,
    det_path: Path | None = None,
    calibrate_on: str = "tune",
    write_calibration: bool = False,
    max_impostor_pairs: int = 2_000_000,
    progress: bool = True,
) -> dict[str, Any]:
    engine = FaceEngine(embedder=embedder)
    needed = "all" if (write_calibration and calibrate_on != split) else split
    images = list_faces(root, needed)
    if not images:
        raise InputError("no images found under the folder", code="empty_dataset")
    bar = _progress_bar(f"embedding ({engine.embedder.name})") if progress else None
    t0 = time.perf_counter()
    everything = embed_images(engine, images, progress=bar)
    embed_s = time.perf_counter() - t0
    evaluated = _subset(everything, split)
    attempted = sum(1 for im in images if split == "all" or identity_split(im.identity) == split)
    failed = attempted - len(evaluated.identities)
    genuine, impostor = pair_scores(evaluated, max_impostor_pairs)
    if len(genuine) == 0 or len(impostor) == 0:
        raise InputError("not enough pairs to evaluate", code="empty_dataset")
    rep = verification_report(genuine, impostor)
    report: dict[str, Any] = {
        "dataset": str(root),
        "split": split,
        "split_rule": "identity -> 'tune' if sha256(name)[0] is even, else 'eval'",
        "embedder": engine.embedder.name,
        "space_id": engine.space_id,
        "images": attempted,
        "identities": len(set(evaluated.identities.tolist())),
        "failure_to_enrol": failed / max(attempted, 1),
        "failures": everything.failures if split == "all" else None,
        **rep.to_dict(),
        "embed_seconds": round(embed_s, 1),
    }
    try:
        shipped = load_calibration(engine.space_id)
        report["at_shipped_thresholds"] = {
            name: dict(
                zip(("fmr", "fnmr"), fmr_fnmr(genuine, impostor, p["threshold"])),
                threshold=p["threshold"],
                fmr_target=p["fmr_target"],
            )
            for name, p in shipped["operating_points"].items()
        }
    except FacegateError:
        report["at_shipped_thresholds"] = None
    if write_calibration and calibrate_on != "none":
        tune = _subset(everything, calibrate_on)
        g, i = pair_scores(tune, max_impostor_pairs)
        record = calibration_record(
            engine.space_id,
            engine.embedder.name,
            g,
            i,
            {
                "dataset": "../shared/data/faces (see PROVENANCE.md)",
                "split": calibrate_on,
                "split_rule": report["split_rule"],
                "images": len(tune.identities),
                "identities": len(set(tune.identities.tolist())),
            },
        )
        target = Path(str(resources.files("facegate.calibration"))) / f"{engine.space_id}.json"
        target.write_text(json.dumps(record, indent=2) + "\n")
        report["calibration_written"] = str(target)
    if report_path:
        write_json(report, report_path)
        det_path = det_path or report_path.with_suffix(".png")
    if det_path:
        plot_det(
            genuine,
            impostor,
            det_path,
            f"{engine.embedder.name} on {root.name} ({split}): EER {rep.eer:.2%}",
        )
        report["det_png"] = str(det_path)
        if report_path:
            write_json(report, report_path)
    return report
