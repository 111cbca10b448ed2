"""Planarity cue: does the face move like a head, or like a flat picture?

When a real head turns, the nose moves across the cheeks (parallax): no single homography maps
the face's landmarks in a frontal frame onto those in a turned frame. A photo held to the
camera, tilted, moved or gently bent, is (nearly) a plane, and one homography explains its
landmarks to within the landmark model's jitter. The score is the homography's RMS residual over
the rigid part of the face (eyes and mouth left out: they move on their own), in units of the
eye-corner distance, taken as the median over the frames where the head pose changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from facegate.liveness.judge import CueResult
from facegate.liveness.signals import FrameSignals

LEFT_EYE_CORNERS, RIGHT_EYE_CORNERS = (33, 133), (362, 263)
MOUTH_CORNERS = (61, 291)


@dataclass(frozen=True)
class PlanarityPolicy:
    baseline_ms: float = 1000.0
    min_yaw_change_deg: float = 12.0
    min_pitch_change_deg: float = 10.0
    min_frames: int = 2
    min_residual: float = 0.03  # RMS residual / eye-corner distance


DEFAULT_PLANARITY_POLICY = PlanarityPolicy()


def rigid_points(mesh: np.ndarray) -> np.ndarray:
    """Indices of mesh points away from the eyes and the mouth (those move on their own)."""
    xy = mesh[:, :2]
    eyes = [xy[list(c)].mean(axis=0) for c in (LEFT_EYE_CORNERS, RIGHT_EYE_CORNERS)]
    mouth = xy[list(MOUTH_CORNERS)].mean(axis=0)
    span = float(np.linalg.norm(xy[33] - xy[263]))
    keep = np.ones(len(xy), bool)
    for centre, radius in ((eyes[0], 0.3), (eyes[1], 0.3), (mouth, 0.55)):
        keep &= np.linalg.norm(xy - centre, axis=1) > radius * span
    return np.flatnonzero(keep)


def homography_residual(src: np.ndarray, dst: np.ndarray, scale: float) -> float:
    """RMS distance between dst and the least-squares homography image of src, over scale."""
    h, _ = cv2.findHomography(src.astype(np.float64), dst.astype(np.float64), 0)
    if h is None:
        return float("inf")
    mapped = cv2.perspectiveTransform(src.reshape(-1, 1, 2).astype(np.float64), h).reshape(-1, 2)
    return float(np.sqrt(((mapped - dst) ** 2).sum(axis=1).mean()) / max(scale, 1e-6))


def judge_planarity(
    signals: Sequence[FrameSignals], policy: PlanarityPolicy = DEFAULT_PLANARITY_POLICY
) -> CueResult:
    # (t_ms, yaw, pitch, mesh) of every frame with a face, its mesh and its pose
    frames: list[tuple[float, float, float, np.ndarray]] = [
        (s.t_ms, s.yaw_deg, s.pitch_deg, s.landmarks.mesh)
        for s in signals
        if s.face
        and s.landmarks is not None
        and s.landmarks.mesh is not None
        and s.yaw_deg is not None
        and s.pitch_deg is not None
    ]
    if not frames:
        return CueResult("planarity", 0.0, policy.min_residual, False, "no face to check")
    t0 = frames[0][0]
    base = [f for f in frames if f[0] <= t0 + policy.baseline_ms]
    yaw0 = float(np.median([f[1] for f in base]))
    pitch0 = float(np.median([f[2] for f in base]))
    ref_mesh = min(base, key=lambda f: abs(f[1] - yaw0) + abs(f[2] - pitch0))[3]
    idx = rigid_points(ref_mesh)
    span = float(np.linalg.norm(ref_mesh[33, :2] - ref_mesh[263, :2]))
    moved = [
        f
        for f in frames
        if abs(f[1] - yaw0) >= policy.min_yaw_change_deg
        or abs(f[2] - pitch0) >= policy.min_pitch_change_deg
    ]
    if len(moved) < policy.min_frames:
        return CueResult(
            "planarity", 0.0, policy.min_residual, False, "the head did not turn enough to check"
        )
    residuals = [homography_residual(ref_mesh[idx, :2], f[3][idx, :2], span) for f in moved]
    score = float(np.median(residuals))
    passed = score >= policy.min_residual
    return CueResult(
        "planarity",
        round(score, 4),
        policy.min_residual,
        passed,
        "" if passed else "the face moved like a flat picture, not a head",
    )
