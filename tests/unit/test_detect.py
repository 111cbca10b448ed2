"""Detector plumbing that does not need a model: anchors, letterbox, NMS."""

from __future__ import annotations

import numpy as np

from facegate.engine.align import ARCFACE_112, align_face, similarity_to_template
from facegate.engine.detect import letterbox, nms, ssd_anchors


def test_anchor_counts_match_the_models() -> None:
    assert ssd_anchors(128, (8, 16, 16, 16)).shape == (896, 2)  # short-range output rows
    assert ssd_anchors(192, (4,)).shape == (2304, 2)  # full-range output rows


def test_letterbox_keeps_aspect_and_centres() -> None:
    img = np.full((100, 200, 3), 255, np.uint8)
    out, scale, pad_x, pad_y = letterbox(img, 128)
    assert out.shape == (128, 128, 3) and scale == 0.64
    assert pad_x == 0 and pad_y == 32
    top = int(pad_y)
    assert out[:top].max() == 0 and out[top + 5, 64].min() == 255


def test_nms_keeps_best_of_overlapping() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, np.array([0.6, 0.9, 0.7], np.float32), 0.3)
    assert keep == [1, 2]


def test_similarity_transform_recovers_a_known_warp() -> None:
    angle, scale, shift = np.deg2rad(12), 1.7, np.array([30.0, -12.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
    points = (ARCFACE_112 - shift) @ np.linalg.inv(rot).T  # so that rot @ p + shift = template
    matrix = similarity_to_template(points.astype(np.float32))
    mapped = points @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - ARCFACE_112).max() < 1e-3
    chip = align_face(np.zeros((300, 300, 3), np.uint8), points.astype(np.float32))
    assert chip.shape == (112, 112, 3)
