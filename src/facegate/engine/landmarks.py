"""Landmarks: MediaPipe's 468-point face mesh (default) and dlib's 5-point predictor.

The mesh runs on a square crop around the detection, 1.5x its size, rotated so the eyes are
level; its points are mapped back to image pixels through the same affine transform.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from facegate.engine.models import dlib_model, mediapipe_model
from facegate.engine.tflite import TFLiteModel
from facegate.types import FaceBox, Landmarks

MESH_INPUT = 192
ROI_SCALE = 1.5

# Mesh indices (subject's right eye appears on the image left in an unmirrored photo).
LEFT_EYE_RING = (33, 133, 159, 145)  # image-left eye: corners, upper and lower lid
RIGHT_EYE_RING = (263, 362, 386, 374)
NOSE_TIP = 1
MOUTH_LEFT, MOUTH_RIGHT = 61, 291


def roi_transform(
    center: tuple[float, float], size: float, angle_rad: float, out: int
) -> np.ndarray:
    """2x3 affine mapping output-crop pixels (u, v) to image pixels, for a square ROI."""
    s = size / out
    c, si = math.cos(angle_rad), math.sin(angle_rad)
    rot = np.array([[c, -si], [si, c]]) * s
    shift = np.asarray(center) - rot @ np.array([out / 2, out / 2])
    return np.hstack([rot, shift[:, None]])


def warp_crop(rgb: np.ndarray, to_image: np.ndarray, size: int, border: int) -> np.ndarray:
    """The (size, size) crop that ``to_image`` (crop pixels -> image pixels) describes."""
    return cv2.warpAffine(
        rgb,
        to_image,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=border,
    )


def mesh_roi(box: FaceBox) -> tuple[tuple[float, float], float, float]:
    """Centre, side and in-plane angle of the crop the mesh model expects for a detection."""
    size = ROI_SCALE * max(box.width, box.height)
    angle = 0.0
    if box.keypoints is not None:
        (x0, y0), (x1, y1) = box.keypoints[0], box.keypoints[1]
        angle = math.atan2(y1 - y0, x1 - x0)
    return box.center, size, angle


def five_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """The five alignment points (5, 2) from a (468, 3) mesh."""
    return np.stack(
        [
            mesh[list(LEFT_EYE_RING), :2].mean(axis=0),
            mesh[list(RIGHT_EYE_RING), :2].mean(axis=0),
            mesh[NOSE_TIP, :2],
            mesh[MOUTH_LEFT, :2],
            mesh[MOUTH_RIGHT, :2],
        ]
    ).astype(np.float32)


class FaceMesh:
    """MediaPipe face mesh (468 points with relative depth) on ai-edge-litert."""

    name = "mediapipe-mesh"

    def __init__(self, num_threads: int = 1) -> None:
        self.model = TFLiteModel(mediapipe_model("face_landmark.tflite").path, num_threads)

    def run_roi(
        self, rgb: np.ndarray, center: tuple[float, float], size: float, angle: float
    ) -> tuple[np.ndarray, float]:
        """Mesh (468, 3) in image pixels (z in the same scale) and the face-presence score."""
        to_image = roi_transform(center, size, angle, MESH_INPUT)
        crop = warp_crop(rgb, to_image, MESH_INPUT, cv2.BORDER_CONSTANT)
        raw, flag = self.model.run((crop.astype(np.float32) / 255.0)[None])
        pts = raw.reshape(468, 3)
        xy = pts[:, :2] @ to_image[:, :2].T + to_image[:, 2]
        z = pts[:, 2:3] * (size / MESH_INPUT)
        presence = 1.0 / (1.0 + math.exp(-float(np.clip(flag.ravel()[0], -80, 80))))
        return np.hstack([xy, z]).astype(np.float32), presence

    def landmarks(self, rgb: np.ndarray, box: FaceBox) -> Landmarks:
        mesh, presence = self.run_roi(rgb, *mesh_roi(box))
        return Landmarks(five=five_from_mesh(mesh), mesh=mesh, presence=presence)


class DlibFivePoint:
    """dlib's 5-point predictor (public domain): eye corners and the base of the nose."""

    name = "dlib-5pt"

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self._predictor = dlib.shape_predictor(
            str(dlib_model("shape_predictor_5_face_landmarks.dat").path)
        )

    def shape(self, rgb: np.ndarray, box: FaceBox) -> Any:  # dlib.full_object_detection
        x0, y0, x1, y1 = (round(v) for v in box.xyxy)
        return self._predictor(rgb, self._dlib.rectangle(x0, y0, x1, y1))
