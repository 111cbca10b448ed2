"""Per-frame signal functions on synthetic landmarks with known geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facegate.engine.quality import head_pose_deg
from facegate.liveness.signals import EAR_POINTS, eye_aspect_ratio, mouth_openness


def eye(open_height: float) -> np.ndarray:
    """A 71-point contour whose EAR points describe an eye 30 wide and ``open_height`` tall."""
    pts = np.zeros((71, 2))
    p1, p2, p3, p4, p5, p6 = EAR_POINTS
    pts[p1], pts[p4] = (0, 0), (30, 0)
    pts[p2], pts[p3] = (10, -open_height / 2), (20, -open_height / 2)
    pts[p6], pts[p5] = (10, open_height / 2), (20, open_height / 2)
    return pts


def test_eye_aspect_ratio() -> None:
    assert eye_aspect_ratio(eye(9.0)) == pytest.approx(0.3)
    assert eye_aspect_ratio(eye(1.5)) == pytest.approx(0.05)
    assert eye_aspect_ratio(np.zeros((71, 2))) == 0.0


def test_mouth_openness() -> None:
    mesh = np.zeros((468, 3))
    mesh[61, :2], mesh[291, :2] = (0, 0), (50, 0)
    mesh[13, :2], mesh[14, :2] = (25, -10), (25, 10)
    assert mouth_openness(mesh) == pytest.approx(0.4)


def rotated_face(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Cheek, forehead, chin and eye points of a frontal face, rotated in 3-D (x right, y down,
    z away from the camera)."""
    mesh = np.zeros((468, 3))
    mesh[234], mesh[454] = (-70, 0, 0), (70, 0, 0)
    mesh[10], mesh[152] = (0, -90, 0), (0, 90, 0)
    mesh[[33, 133]] = (-45, -20, 0)
    mesh[[263, 362]] = (45, -20, 0)
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    return mesh @ (rx @ ry).T


@pytest.mark.parametrize("yaw, pitch", [(0, 0), (30, 0), (-25, 0), (0, 20), (0, -15), (20, 10)])
def test_head_pose_follows_rotation(yaw: float, pitch: float) -> None:
    got_yaw, got_pitch, roll = head_pose_deg(rotated_face(yaw, pitch))
    assert got_yaw == pytest.approx(yaw, abs=3)
    assert got_pitch == pytest.approx(pitch, abs=3)
    assert roll == pytest.approx(0, abs=5)  # the eye line tilts a little under yaw + pitch
