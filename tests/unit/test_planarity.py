"""Planarity: a rotating 3-D face leaves a homography residual, a tilted flat one does not."""

from __future__ import annotations

import math

import numpy as np

from facegate.liveness.planarity import homography_residual, judge_planarity
from facegate.liveness.signals import FrameSignals
from facegate.types import Landmarks


def head(n: int = 468, seed: int = 0) -> np.ndarray:
    """Points on the front of an ellipsoid, like a face mesh (x, y, depth), in pixels."""
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(-1.1, 1.1, n), rng.uniform(-1.3, 1.3, n)
    keep = u**2 / 1.21 + v**2 / 1.69 < 1
    u, v = u[keep], v[keep]
    z = -60 * np.sqrt(np.clip(1 - u**2 / 1.21 - v**2 / 1.69, 0, 1))
    pts = np.stack([320 + 70 * u, 240 + 90 * v, z], axis=1)
    return pts


def project(points: np.ndarray, yaw_deg: float, flat: bool) -> np.ndarray:
    p = points.copy()
    if flat:
        p[:, 2] = 0.0
    c = p.mean(axis=0)
    a = math.radians(yaw_deg)
    r = np.array([[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]])
    q = (p - c) @ r.T + c
    f, depth = 640.0, 500.0
    x = 320 + f * (q[:, 0] - 320) / (depth + q[:, 2])
    y = 240 + f * (q[:, 1] - 240) / (depth + q[:, 2])
    return np.stack([x, y, q[:, 2]], axis=1)


def as_signals(meshes: list[np.ndarray], yaws: list[float]) -> list[FrameSignals]:
    return [
        FrameSignals(
            t_ms=i * 66.7,
            face=True,
            yaw_deg=yaw,
            pitch_deg=0.0,
            landmarks=Landmarks(five=m[:5, :2], mesh=m, presence=1.0),
        )
        for i, (m, yaw) in enumerate(zip(meshes, yaws))
    ]


def test_residual_is_zero_for_a_plane_and_large_for_a_head() -> None:
    pts = head()
    span = 60.0
    flat = homography_residual(project(pts, 0, True)[:, :2], project(pts, 30, True)[:, :2], span)
    solid = homography_residual(project(pts, 0, False)[:, :2], project(pts, 30, False)[:, :2], span)
    assert flat < 1e-3
    assert solid > 0.05


def test_judge_planarity_tells_a_turning_head_from_a_tilted_photo(monkeypatch) -> None:
    import facegate.liveness.planarity as planarity

    # synthetic points have no eyes or mouth to leave out
    monkeypatch.setattr(planarity, "rigid_points", lambda mesh: np.arange(len(mesh)))
    pts = head()
    yaws = [0.0] * 15 + [5.0 * k for k in range(1, 8)] + [35.0] * 5
    for flat, should_pass in ((False, True), (True, False)):
        meshes = [project(pts, y, flat) for y in yaws]
        # make the eye corners (indices 33, 263) sensible for the scale
        result = judge_planarity(as_signals(meshes, yaws))
        assert result.passed is should_pass, result


def test_no_head_movement_fails_closed() -> None:
    pts = head()
    meshes = [project(pts, 0, False)] * 20
    result = judge_planarity(as_signals(meshes, [0.0] * 20))
    assert not result.passed
