"""Does dlib's ResNet on onnxruntime compute what dlib computes? Checked on real photos.

For each photo: the face is found (BlazeFace), dlib cuts its own 150x150 chip, and both runtimes
embed that chip. A photo without a detected face is checked on the whole photo resized to a chip,
so every photo is checked. Runs in worker processes (dlib's own ResNet takes ~100 ms a chip).
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facegate.engine.decode import decode_image
from facegate.engine.embed import DlibEmbedder
from facegate.engine.pipeline import BlazeFacePair


@dataclass(frozen=True)
class Agreement:
    path: str
    face_found: bool
    cosine: float  # between the raw descriptors of the two runtimes
    max_abs_diff: float
    onnx_ms: float
    dlib_ms: float


@dataclass(frozen=True)
class _Runtimes:
    detector: BlazeFacePair
    onnx: DlibEmbedder
    dlib: DlibEmbedder


_loaded: list[_Runtimes] = []  # one per process, loaded on first use


def _runtimes() -> _Runtimes:
    if not _loaded:
        _loaded.append(
            _Runtimes(BlazeFacePair(), DlibEmbedder(runtime="onnx"), DlibEmbedder(runtime="dlib"))
        )
    return _loaded[0]


def _chip(rt: _Runtimes, rgb: np.ndarray) -> tuple[np.ndarray, bool]:
    """dlib's chip of the largest detected face, else the whole photo resized."""
    boxes = rt.detector.detect(rgb)
    if boxes:
        return rt.onnx.align(rgb, max(boxes, key=lambda b: b.area), None), True
    return cv2.resize(rgb, (150, 150), interpolation=cv2.INTER_AREA), False


def _timed(embedder: DlibEmbedder, chip: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    row = embedder.descriptors([chip])[0]
    return row, (time.perf_counter() - start) * 1000


def check_photos(paths: list[str]) -> list[Agreement]:
    """Compare both runtimes on each photo (models load once per process)."""
    rt = _runtimes()
    out = []
    for path in paths:
        rgb = decode_image(Path(path).read_bytes())
        chip, found = _chip(rt, rgb)
        a, onnx_ms = _timed(rt.onnx, chip)
        b, dlib_ms = _timed(rt.dlib, chip)
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
