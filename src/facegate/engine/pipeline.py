"""FaceEngine: decode -> detect -> landmarks -> align -> quality -> embed, models loaded once.

The engine holds loaded models and nothing else; every call is a pure function of its input.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from facegate.engine.align import align_face
from facegate.engine.decode import DEFAULT_LIMITS, ImageLimits, decode_image
from facegate.engine.detect import (
    BlazeFaceDetector,
    Detector,
    DlibCnnDetector,
    DlibHogDetector,
    nms,
)
from facegate.engine.embed import ARCFACE_CHIP, DEFAULT_EMBEDDER, Embedder, load_embedder
from facegate.engine.landmarks import FaceMesh
from facegate.engine.quality import DEFAULT_BOUNDS, QualityBounds, assess
from facegate.errors import FaceError, FacegateError
from facegate.types import Embedding, FaceBox, Landmarks, QualityCheck

__all__ = ["DEFAULT_EMBEDDER", "FaceEngine", "FaceResult", "load_detector"]
MultiplePolicy = Literal["reject", "largest"]

# A second face counts as "another person in the picture" when it is at least this fraction of
# the largest face's width; smaller faces (crowds far behind) cannot be the subject.
SECOND_FACE_MIN_RELATIVE_WIDTH = 0.5


@dataclass(frozen=True)
class FaceResult:
    """The analysed face of one image, with every quality value measured on it."""

    box: FaceBox
    landmarks: Landmarks
    quality: list[QualityCheck]
    embedding: Embedding
    faces_found: int
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def quality_passed(self) -> bool:
        return all(c.passed for c in self.quality)

    def quality_dict(self) -> dict[str, object]:
        return {c.name: c.to_dict() for c in self.quality}


# The full-range model runs only when the short-range one finds no face, or when its widest face
# is narrower than this many pixels of its 128-pixel input (under half the picture's long side).
# Measured with bench/bench_detect.py: at 64 px the decisions (no face / one / several, and the
# main box) are the same as running both models on all 1505 photos of ../shared/data/faces and on
# 300 two-person pictures built from them (640x480 and 320x240); at 48 px 10 photos differed
# (a second, background face only the full-range model saw).
FULL_RANGE_BELOW_PX = 64.0


class BlazeFacePair:
    """Both BlazeFace models, merged by non-maximum suppression.

    The short-range model finds every face of ../shared/data/faces but, on a 128 px input, misses
    the second, smaller face of a two-person photo; the full-range model finds those (and only
    96.7% of the single portraits). The full-range model costs ~4x the short-range one (192 px
    input), so it runs only where the short-range model's view is not enough (see
    ``FULL_RANGE_BELOW_PX``); ``always_full=True`` restores running both on every image.
    """

    name = "blazeface"

    def __init__(self, num_threads: int = 1, always_full: bool = False) -> None:
        self.short = BlazeFaceDetector("short", num_threads=num_threads)
        self.full = BlazeFaceDetector("full", num_threads=num_threads)
        self.always_full = always_full
        self.full_runs = 0  # how often the full-range model ran (for benchmarks)

    def needs_full(self, rgb: np.ndarray, short: list[FaceBox]) -> bool:
        if self.always_full or not short:
            return True
        widest = max(b.width for b in short) * self.short.size / max(rgb.shape[:2])
        return bool(widest < FULL_RANGE_BELOW_PX)

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        found = self.short.detect(rgb)
        if self.needs_full(rgb, found):
            self.full_runs += 1
            found = found + self.full.detect(rgb)
        if len(found) <= 1:
            return found
        boxes = np.array([b.xyxy for b in found], dtype=np.float32)
        scores = np.array([b.score for b in found], dtype=np.float32)
        return [found[i] for i in nms(boxes, scores, 0.3)]


def load_detector(name: str, num_threads: int = 1) -> Detector:
    if name == "blazeface":
        return BlazeFacePair(num_threads)
    if name == "hog":
        return DlibHogDetector(upsample=1)
    if name == "cnn":
        return DlibCnnDetector()
    raise ValueError(f"unknown detector {name!r}; choose blazeface, hog or cnn")


class FaceEngine:
    def __init__(
        self,
        embedder: str = DEFAULT_EMBEDDER,
        detector: str = "blazeface",
        *,
        bounds: QualityBounds = DEFAULT_BOUNDS,
        limits: ImageLimits = DEFAULT_LIMITS,
        num_threads: int = 1,
    ) -> None:
        self.detector = load_detector(detector, num_threads)
        self.mesh = FaceMesh(num_threads)
        self.embedder: Embedder = load_embedder(embedder, num_threads)
        self.bounds = bounds
        self.limits = limits

    @property
    def space_id(self) -> str:
        return self.embedder.space_id

    def embeddings_by_space(self, embedding: Embedding) -> dict[str, Embedding]:
        """Every embedding space this engine's result can be scored in: its own, and for the
        ``fused`` embedder each part's (for templates enrolled before a change of embedder)."""
        out = {embedding.space_id: embedding}
        parts = getattr(self.embedder, "parts", None)
        if parts is not None and embedding.space_id == self.space_id:
            for space, vector in parts(embedding.vector).items():
                out[space] = Embedding(vector, space)
        return out

    def analyse(
        self,
        image: bytes | np.ndarray,
        *,
        multiple: MultiplePolicy = "reject",
        enforce_quality: bool = True,
    ) -> FaceResult:
        """One face from one image, or ``FaceError``/``InputError`` with a reason code."""
        return self._embed(self._prepare(image, multiple, enforce_quality))

    def analyse_many(
        self,
        images: Iterable[bytes | np.ndarray],
        *,
        multiple: MultiplePolicy = "reject",
        enforce_quality: bool = True,
    ) -> Iterator[FaceResult | FacegateError]:
        """``analyse`` over many images, in order: each result, or the refusal it raised.

        Why: on a small photo the embedding is two thirds of the work and keeps both cores
        busy only part of the time; here the next image is decoded, detected, meshed and
        checked on a worker thread while this one is embedded (the runtimes release the GIL).
        The detector and mesh run only on that thread and the embedders only on this one, so no
        interpreter is used by two threads at once, and every result is the one ``analyse``
        gives (tests/data/test_engine_faces.py). For batches (``eval faces``, any caller with
        many photos); a service request is one image and calls ``analyse``. The images are
        read from ``images`` on the caller's thread, one ahead.
        """

        def prepare(image: bytes | np.ndarray) -> _Prepared | FacegateError:
            try:
                return self._prepare(image, multiple, enforce_quality)
            except FacegateError as exc:
                return exc

        items = iter(images)
        with ThreadPoolExecutor(1, thread_name_prefix="facegate-prepare") as pool:
            pending = [pool.submit(prepare, first) for first in itertools.islice(items, 1)]
            while pending:
                done = pending.pop().result()
                pending += [pool.submit(prepare, nxt) for nxt in itertools.islice(items, 1)]
                if isinstance(done, FacegateError):
                    yield done
                    continue
                try:
                    yield self._embed(done)
                except FacegateError as exc:
                    yield exc

    def _prepare(
        self, image: bytes | np.ndarray, multiple: MultiplePolicy, enforce_quality: bool
    ) -> _Prepared:
        """Everything before the embedding: decode, detect, mesh, align, quality gate."""
        timings: dict[str, float] = {}
        t = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal t
            now = time.perf_counter()
            timings[stage] = (now - t) * 1000
            t = now

        rgb = decode_image(image, self.limits) if isinstance(image, bytes) else image
        lap("decode")
        boxes = self.detector.detect(rgb)
        lap("detect")
        if not boxes:
            raise FaceError("no face was found in the image", code="no_face")
        boxes = sorted(boxes, key=lambda b: -b.area)
        main = boxes[0]
        others = [b for b in boxes[1:] if b.width >= SECOND_FACE_MIN_RELATIVE_WIDTH * main.width]
        if others and multiple == "reject":
            raise FaceError(
                "more than one face is in the image", code="multiple_faces", faces=1 + len(others)
            )
        landmarks = self.mesh.landmarks(rgb, main)
        lap("landmarks")
        chip = align_face(rgb, landmarks.five, 112)
        lap("align")
        checks = assess(main, landmarks, chip, self.bounds)
        lap("quality")
        failed = [c for c in checks if not c.passed]
        if failed and (enforce_quality or failed[0].name == "face_presence"):
            raise FaceError(
                "the face does not pass the quality gate: " + ", ".join(c.reason for c in failed),
                code=failed[0].reason,
                reasons=[c.reason for c in failed],
                quality={c.name: c.to_dict() for c in checks},
            )
        return _Prepared(rgb, main, landmarks, chip, checks, 1 + len(others), timings)

    def _embed(self, job: _Prepared) -> FaceResult:
        t = time.perf_counter()
        if getattr(self.embedder, "chip", None) == ARCFACE_CHIP:  # the quality gate's own chip
            vector = self.embedder.embed_chip(job.chip)
        else:
            vector = self.embedder.embed(job.rgb, job.box, job.landmarks)
        job.timings_ms["embed"] = (time.perf_counter() - t) * 1000
        return FaceResult(
            box=job.box,
            landmarks=job.landmarks,
            quality=job.quality,
            embedding=Embedding(vector, self.space_id),
            faces_found=job.faces_found,
            timings_ms=job.timings_ms,
        )


@dataclass(frozen=True)
class _Prepared:
    """An image analysed up to its embedding (``FaceEngine._prepare``)."""

    rgb: np.ndarray
    box: FaceBox
    landmarks: Landmarks
    chip: np.ndarray  # align_face(rgb, landmarks.five, 112): what ARCFACE_CHIP embedders read
    quality: list[QualityCheck]
    faces_found: int
    timings_ms: dict[str, float]
