"""Alignment: a similarity transform of five landmarks onto a fixed template (pure function)."""

from __future__ import annotations

import cv2
import numpy as np

# The standard 112x112 five-point template of ArcFace-family models (InsightFace, MobileFaceNet):
# image-left eye, image-right eye, nose tip, image-left and image-right mouth corners.
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def similarity_to_template(points: np.ndarray, template: np.ndarray = ARCFACE_112) -> np.ndarray:
    """Least-squares similarity transform (2x3) taking ``points`` (5, 2) onto ``template``."""
    matrix, _ = cv2.estimateAffinePartial2D(points.astype(np.float32), template, method=cv2.LMEDS)
    if matrix is None:  # degenerate points: fall back to the plain least-squares (Umeyama) fit
        matrix = _umeyama(points.astype(np.float64), template.astype(np.float64))
    return matrix


def align_face(rgb: np.ndarray, five: np.ndarray, size: int = 112) -> np.ndarray:
    """Warp the face to a (size, size, 3) chip matching the template."""
    template = ARCFACE_112 * (size / 112.0)
    matrix = similarity_to_template(five, template)
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / max(s.var(0).sum(), 1e-12)
    shift = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, shift[:, None]]).astype(np.float32)
