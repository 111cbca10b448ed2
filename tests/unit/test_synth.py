"""Attack-generation helpers: timelines, the card projection and the piecewise warp."""

from __future__ import annotations

from random import Random

import numpy as np

from facegate.attack.synth import card_corners, piecewise_affine, triangulate
from facegate.attack.timeline import HEAD_POSE, make_timeline


def test_timeline_performs_each_action_in_its_window() -> None:
    tl = make_timeline(("turn_left", "blink", "open_mouth"), Random(0))
    assert tl.pose(0.0).yaw_deg == 0.0
    mid = [s + d / 2 for s, d in zip(tl.starts_ms, tl.durations_ms)]
    assert abs(tl.pose(mid[0]).yaw_deg - HEAD_POSE["turn_left"][0]) < 1e-6
    assert tl.pose(mid[1]).eyes_closed > 0.99
    assert tl.pose(mid[2]).mouth_open > 0.99
    assert list(tl.starts_ms) == sorted(tl.starts_ms)


def test_a_card_turned_about_its_vertical_axis_narrows() -> None:
    flat = card_corners(200, 300, 0, 0, (320, 240), 300)
    turned = card_corners(200, 300, 40, 0, (320, 240), 300)
    width = lambda c: c[1][0][0] - c[0][0][0]  # noqa: E731
    assert width(turned) < 0.85 * width(flat)
    assert abs((flat[0][1][1] - flat[0][0][1]) - 300) < 1  # the asked height


def test_piecewise_affine_with_unmoved_points_is_the_identity() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    pts = np.array([[0, 0], [159, 0], [0, 119], [159, 119], [80, 60], [40, 30], [120, 90]], float)
    tris = triangulate(pts)
    out = piecewise_affine(image, pts, pts, tris)
    assert len(tris) >= 6
    assert np.abs(out.astype(int) - image.astype(int)).mean() < 1.0
