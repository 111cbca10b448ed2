"""Embedders behind one protocol. Each names its embedding space; spaces never mix.

- ``mobilefacenet``: MobileFaceNet (sirius-ai, Apache-2.0; TFLite conversion by syaringan357, MIT),
  192-D, on a 112x112 chip aligned to the ArcFace five-point template. The model's batch is fixed
  at 2, so the horizontally flipped chip rides along for free and the two are averaged.
- ``dlib``: dlib's ResNet (public domain), 128-D, on dlib's 150x150 chip from its 5-point predictor,
  run on onnxruntime from dlib's own weights (``dlib_onnx``).
- ``sface``: SFace (OpenCV Zoo, Apache-2.0), 128-D, on the same 112x112 chip (``engine/sface.py``).
- ``fused``: MobileFaceNet + SFace in one unit vector whose cosine is their weighted score fusion
  (``engine/fusion.py``).

Vectors are L2-normalised, so the score is a cosine similarity.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np

from facegate.engine.align import align_face
from facegate.engine.dlib_format import read_dlib_resnet
from facegate.engine.landmarks import DlibFivePoint
from facegate.engine.models import MOBILEFACENET_SHA256, dlib_model, mobilefacenet_model
from facegate.engine.tflite import TFLiteModel
from facegate.engine.tflite_graph import fuse_prelu
from facegate.errors import ModelError
from facegate.types import FaceBox, Landmarks

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """``align`` cuts the model's own input chip; ``embed_chip`` turns it into a unit vector.

    Split in two so that a video can keep small chips of many frames and embed only a few.
    """

    name: str
    space_id: str
    dim: int

    def align(self, rgb: np.ndarray, box: FaceBox, landmarks: Landmarks) -> np.ndarray: ...

    def embed_chip(self, chip: np.ndarray) -> np.ndarray: ...

    def embed_chips(self, chips: list[np.ndarray]) -> list[np.ndarray]: ...

    def embed(self, rgb: np.ndarray, box: FaceBox, landmarks: Landmarks) -> np.ndarray: ...


# An embedder whose ``chip`` is this cuts its chip as ``align_face(rgb, landmarks.five, 112)``,
# exactly the chip the quality gate measures, so the pipeline hands it that one (no second warp).
ARCFACE_CHIP = "arcface112"


def l2_normalise(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


class MobileFaceNetEmbedder:
    name = "mobilefacenet"
    dim = 192
    chip = ARCFACE_CHIP

    def __init__(self, flip: bool = True, num_threads: int = 1, fast_prelu: bool = True) -> None:
        self.flip = flip
        data = mobilefacenet_model().path.read_bytes()
        if hashlib.sha256(data).hexdigest() != MOBILEFACENET_SHA256:  # the bytes we load
            raise ModelError("MobileFaceNet weights fail their checksum", code="model_checksum")
        if fast_prelu:  # same bits, 40% less time (engine/tflite_graph.py)
            data, _ = fuse_prelu(data)
        self.model = TFLiteModel(None, num_threads=num_threads, content=data)
        self.space_id = f"mobilefacenet-{MOBILEFACENET_SHA256[:8]}-mesh5-arcface112" + (
            "-flip" if flip else ""
        )

    def align(self, rgb: np.ndarray, box: FaceBox, landmarks: Landmarks) -> np.ndarray:
        return align_face(rgb, landmarks.five, 112)

    def embed_chips_raw(self, chip_a: np.ndarray, chip_b: np.ndarray) -> np.ndarray:
        """Run the fixed batch of two chips; returns (2, 192) raw embeddings."""
        batch = np.stack([chip_a, chip_b]).astype(np.float32)
        (out,) = self.model.run((batch - 127.5) / 128.0)
        return out

    def embed(self, rgb: np.ndarray, box: FaceBox, landmarks: Landmarks) -> np.ndarray:
        return self.embed_chip(self.align(rgb, box, landmarks))

    def embed_chips(self, chips: list[np.ndarray]) -> list[np.ndarray]:
        """Many chips, two per call and without the flip: for comparing frames of one video
        with each other (half the cost; not for templates, whose space includes the flip)."""
        out: list[np.ndarray] = []
        for k in range(0, len(chips), 2):
            a = chips[k]
            b = chips[k + 1] if k + 1 < len(chips) else a
            raw = self.embed_chips_raw(a, b)
            out += [l2_normalise(raw[0]), l2_normalise(raw[1])][: min(2, len(chips) - k)]
        return out

    def embed_chip(self, chip: np.ndarray) -> np.ndarray:
        if self.flip:
            out = self.embed_chips_raw(chip, chip[:, ::-1])
            vec = l2_normalise(out[0]) + l2_normalise(out[1])
        else:
            vec = self.embed_chips_raw(chip, chip)[0]
        return l2_normalise(vec)


class DlibEmbedder:
    """dlib's ResNet on dlib's own chip.

    ``runtime="onnx"`` (the default) runs dlib's weights on onnxruntime (``dlib_onnx``, 10-13 ms
    a face on one thread); ``"dlib"`` runs dlib itself (140-190 ms: dlib-bin has no BLAS). Both
    compute the same embedding (agreement to 1e-4 cosine is tested on every face of the shared
    data), so they share one embedding space.
    """

    name = "dlib"
    dim = 128
    space_id = "dlib-resnet-v1-5pt-chip150"

    def __init__(self, runtime: str = "onnx", num_threads: int = 1) -> None:
        import dlib

        if runtime not in ("onnx", "dlib"):
            raise ValueError(f"unknown dlib runtime {runtime!r}; choose onnx or dlib")
        self._dlib = dlib
        self._five = DlibFivePoint()
        self.runtime = runtime
        path = dlib_model("dlib_face_recognition_resnet_model_v1.dat").path
        if runtime == "onnx":
            from facegate.engine.dlib_onnx import DlibOnnxNet  # onnx loads only when used

            try:
                net = read_dlib_resnet(path.read_bytes())
            except ValueError as exc:
                raise ModelError(f"cannot read dlib's ResNet: {exc}", code="model_invalid") from exc
            self._onnx = DlibOnnxNet(net, num_threads=num_threads)
        else:
            self._net = dlib.face_recognition_model_v1(str(path))

    def align(self, rgb: np.ndarray, box: FaceBox, landmarks: Landmarks | None) -> np.ndarray:
        """dlib's own 150x150 chip (padding 0.25) from its 5-point predictor on the box."""
        return np.asarray(self._dlib.get_face_chip(rgb, self._five.shape(rgb, box), 150, 0.25))

    def descriptors(self, chips: list[np.ndarray]) -> np.ndarray:
        """dlib's raw (not normalised) 128-D descriptors, one row per chip."""
        if not chips:
            return np.zeros((0, self.dim), np.float32)
        if self.runtime == "onnx":
            return self._onnx.run(np.stack(chips))
        rows = [self._net.compute_face_descriptor(c) for c in chips]
        return np.asarray(rows, np.float32)

    def embed_chip(self, chip: np.ndarray) -> np.ndarray:
        return l2_normalise(self.descriptors([chip])[0])

    def embed_chips(self, chips: list[np.ndarray]) -> list[np.ndarray]:
        return [l2_normalise(row) for row in self.descriptors(chips)]

    def embed(self, rgb: np.ndarray, box: FaceBox, landmarks: Landmarks) -> np.ndarray:
        return self.embed_chip(self.align(rgb, box, landmarks))


def _sface(num_threads: int = 1) -> Embedder:
    from facegate.engine.sface import SFaceEmbedder  # onnx/onnxruntime load only when used

    return SFaceEmbedder(num_threads=num_threads)


def _fused(num_threads: int = 1) -> Embedder:
    from facegate.engine.fusion import FusedEmbedder

    return FusedEmbedder(num_threads=num_threads)


# name -> loader(num_threads=...). The CLI's --embedder choices come from sorted(EMBEDDERS).
EMBEDDERS: dict[str, Callable[..., Embedder]] = {
    "mobilefacenet": MobileFaceNetEmbedder,
    "dlib": DlibEmbedder,
    "sface": _sface,
    "fused": _fused,
}

# The embedder a deployment runs unless it names another (FACEGATE_EMBEDDER). Chosen by
# measurement on the eval split of ../shared/data/faces: lowest FNMR at FMR 1e-3 (2.82%) and
# 1e-4 (4.02%; MobileFaceNet 4.34% / 7.38%, SFace 2.93% / 4.67%), verify 34-38 ms at 640x480 on
# two threads, within the 40 ms budget (README "Accuracy", "Speed"). There is no fallback: a
# missing model raises ModelError at start, because templates of one space never match another's.
DEFAULT_EMBEDDER = "fused"
# Accepted for compatibility with callers that pass "default": it means DEFAULT_EMBEDDER.
DEFAULT = "default"


def load_embedder(name: str = DEFAULT_EMBEDDER, num_threads: int = 1) -> Embedder:
    """Load one embedder by name; ``ModelError`` when its weights are missing or altered."""
    if name == DEFAULT:
        name = DEFAULT_EMBEDDER
    if name not in EMBEDDERS:
        raise ValueError(f"unknown embedder {name!r}; choose from {sorted(EMBEDDERS)}")
    return EMBEDDERS[name](num_threads=num_threads)
