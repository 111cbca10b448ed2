"""Does dlib's ResNet on onnxruntime compute what dlib computes? Checked on real photos.

For each photo: the face is found (BlazeFace), dlib cuts its own 150x150 chip, and both runtimes
embed that chip. A photo without a detected face is checked on the whole photo resized to a chip,
so every photo is checked. Runs in worker processes (dlib's own ResNet takes ~100 ms a chip).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facegate.engine.decode import decode_image


@dataclass(frozen=True)
class Agreement:
    path: str
    face_found: bool
    cosine: float  # between the raw descriptors of the two runtimes
    max_abs_diff: float
    onnx_ms: float
    dlib_ms: float


_models: dict[str, object] = {}


def _load_models() -> None:
    from facegate.engine.embed import DlibEmbedder
    from facegate.engine.pipeline import BlazeFacePair

    if not _models:
        _models["detector"] = BlazeFacePair()
        _models["onnx"] = DlibEmbedder(runtime="onnx")
        _models["dlib"] = DlibEmbedder(runtime="dlib")


def _chip(rgb: np.ndarray) -> tuple[np.ndarray, bool]:
    boxes = _models["detector"].detect(rgb)  # type: ignore[attr-defined]
    if boxes:
        main = max(boxes, key=lambda b: b.area)
        return _models["onnx"].align(rgb, main, None), True  # type: ignore[attr-defined]
    return cv2.resize(rgb, (150, 150), interpolation=cv2.INTER_AREA), False


def _timed(embedder: object, chip: np.ndarray) -> tuple[np.ndarray, float]:
    import time

    start = time.perf_counter()
    row = embedder.descriptors([chip])[0]  # type: ignore[attr-defined]
    return row, (time.perf_counter() - start) * 1000


def check_photos(paths: list[str]) -> list[Agreement]:
    """Compare both runtimes on each photo (models load once per process)."""
    _load_models()
    out = []
    for path in paths:
        rgb = decode_image(Path(path).read_bytes())
        chip, found = _chip(rgb)
        a, onnx_ms = _timed(_models["onnx"], chip)
        b, dlib_ms = _timed(_models["dlib"], chip)
        cosine = float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))
        diff = float(np.abs(a - b).max())
        out.append(Agreement(path, found, cosine, diff, onnx_ms, dlib_ms))
    return out


def check_agreement(paths: list[Path], workers: int = 2) -> list[Agreement]:
    """All photos, split over ``workers`` fresh processes; results in the order given."""
    names = [str(p) for p in paths]
    if workers <= 1 or len(names) < 2:
        return check_photos(names)
    chunks = [names[k::workers] for k in range(workers)]
    context = multiprocessing.get_context("spawn")  # no inherited runtime threads
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        results = [r for part in pool.map(check_photos, chunks) for r in part]
    order = {name: k for k, name in enumerate(names)}
    return sorted(results, key=lambda r: order[r.path])
