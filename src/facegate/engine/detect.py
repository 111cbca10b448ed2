"""Face detectors behind one protocol: MediaPipe BlazeFace (default) and dlib HOG.

BlazeFace is an SSD: the model predicts, for each fixed anchor, a box and six keypoints
(image-left eye, image-right eye, nose tip, mouth centre, image-left ear, image-right ear)
relative to the anchor. We letterbox the image into the model's square input, decode, undo the
letterbox and run non-maximum suppression.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

from facegate.engine.models import mediapipe_model
from facegate.engine.tflite import TFLiteModel
from facegate.types import FaceBox


class Detector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[FaceBox]: ...


# (file, input size, anchor strides, anchors per cell) for the two BlazeFace variants we use.
_BLAZEFACE_VARIANTS = {
    "short": ("face_detection_short_range.tflite", 128, (8, 16, 16, 16)),
    "full": ("face_detection_full_range.tflite", 192, (4,)),
}


def as_xyxy(values: object) -> tuple[float, float, float, float]:
    """Four numbers (array row or tuple) as a typed (x0, y0, x1, y1) box."""
    x0, y0, x1, y1 = (float(v) for v in values)  # type: ignore[attr-defined]
    return x0, y0, x1, y1


def ssd_anchors(input_size: int, strides: tuple[int, ...]) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1], in the order MediaPipe's SSD anchor calculator emits them.

    Consecutive layers with the same stride share one grid; each layer adds two anchors per cell
    when there are several layers (interpolated aspect ratio) and one when there is a single layer.
    """
    per_layer = 1 if len(strides) == 1 else 2
    anchors: list[np.ndarray] = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        cells = input_size // strides[i]
        centres = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        xs, ys = np.meshgrid(centres, centres)
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        anchors.append(np.repeat(grid, per_layer * (j - i), axis=0))
        i = j
    return np.concatenate(anchors, axis=0)


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """Resize keeping the aspect ratio, pad to size x size; returns (image, scale, pad_x, pad_y)."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (nw, nh), interpolation=interp)
    pad_x, pad_y = (size - nw) / 2, (size - nh) / 2
    top, left = int(pad_y), int(pad_x)
    out = cv2.copyMakeBorder(
        resized, top, size - nh - top, left, size - nw - left, cv2.BORDER_CONSTANT, value=(0, 0, 0)
    )
    return out, scale, float(left), float(top)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression over (N, 4) xyxy boxes; returns kept indices, best first."""
    order = np.argsort(-scores)
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx1 - xx0, 0, None) * np.clip(yy1 - yy0, 0, None)
        iou = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[iou < iou_threshold]
    return keep


class BlazeFaceDetector:
    """MediaPipe BlazeFace on ai-edge-litert. ``variant``: "short" (faces within ~2 m) or "full"."""

    def __init__(self, variant: str = "full", min_score: float = 0.5, num_threads: int = 1) -> None:
        if variant not in _BLAZEFACE_VARIANTS:
            raise ValueError(f"unknown BlazeFace variant {variant!r}")
        file, size, strides = _BLAZEFACE_VARIANTS[variant]
        self.name = f"blazeface-{variant}"
        self.size = size
        self.min_score = min_score
        self.model = TFLiteModel(mediapipe_model(file).path, num_threads=num_threads)
        self.anchors = ssd_anchors(size, strides)

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        img, scale, pad_x, pad_y = letterbox(rgb, self.size)
        tensor = (img.astype(np.float32) / 127.5 - 1.0)[None]
        raw_boxes, raw_scores = self.model.run(tensor)
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores[0, :, 0], -80, 80)))
        hit = scores >= self.min_score
        if not hit.any():
            return []
        reg = raw_boxes[0, hit] / self.size
        anchors = self.anchors[hit]
        centre = reg[:, 0:2] + anchors
        half = reg[:, 2:4] / 2
        xyxy = np.concatenate([centre - half, centre + half], axis=1) * self.size
        kps = (reg[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]) * self.size
        offset = np.array([pad_x, pad_y], dtype=np.float32)
        xyxy = (xyxy - np.tile(offset, 2)) / scale
        kps = (kps - offset) / scale
        keep = nms(xyxy, scores[hit], 0.3)
        return [FaceBox(as_xyxy(xyxy[i]), float(scores[hit][i]), kps[i]) for i in keep]


class DlibCnnDetector:
    """dlib's MMOD CNN detector (public domain weights). Robust to pose, but ~1.8 s per 640x480
    image on dlib-bin (no BLAS): an option for offline batches, not for requests. Images are
    downscaled so the long side is at most ``max_side`` first."""

    def __init__(self, max_side: int = 640) -> None:
        import dlib

        from facegate.engine.models import dlib_model

        self.name = "dlib-cnn"
        self.max_side = max_side
        self._detector = dlib.cnn_face_detection_model_v1(
            str(dlib_model("mmod_human_face_detector.dat").path)
        )

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        scale = min(1.0, self.max_side / max(rgb.shape[:2]))
        small = cv2.resize(rgb, None, fx=scale, fy=scale) if scale < 1 else rgb
        found = []
        for d in self._detector(small, 0):
            r = d.rect
            box = (r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale)
            found.append(FaceBox(as_xyxy(box), float(d.confidence)))
        return sorted(found, key=lambda b: -b.score)


class DlibHogDetector:
    """dlib's HOG + linear SVM frontal detector; ``upsample`` 1 finds faces down to ~40 px."""

    def __init__(self, upsample: int = 0) -> None:
        import dlib

        self.name = f"dlib-hog-up{upsample}"
        self.upsample = upsample
        self._detector = dlib.get_frontal_face_detector()

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        rects, scores, _ = self._detector.run(gray, self.upsample, 0.0)
        found = [
            FaceBox(
                (float(r.left()), float(r.top()), float(r.right()), float(r.bottom())), float(s)
            )
            for r, s in zip(rects, scores)
        ]
        return sorted(found, key=lambda b: -b.score)
