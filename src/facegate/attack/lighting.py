"""Screen light rendered onto real video frames (pure numpy/OpenCV).

Bona fide case for the colour-flash cue: the screen's colour is added to the face in
proportion to how squarely each part faces the camera (Lambert shading from the face mesh's
3-D surface normals; the screen sits next to the camera), and to the distant background at a
small fraction (light falls off with the square of the distance). Attacks: the same light on
the whole frame (a tinted video), or a sequence the challenge did not ask for, or late.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from facegate.attack.synth import triangulate
from facegate.liveness.flash import hex_rgb

SHADE_SCALE = 4  # shading map resolution divisor


def face_shading(shape: tuple[int, int], mesh: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(h, w) map in [0, 1]: how squarely each face pixel faces the camera; 0 off the face."""
    h, w = shape
    small = np.zeros((h // SHADE_SCALE + 1, w // SHADE_SCALE + 1), np.float32)
    p = mesh[triangles]  # (m, 3, 3)
    normals = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    norm = np.linalg.norm(normals, axis=1)
    facing = np.abs(normals[:, 2]) / np.maximum(norm, 1e-9)
    for tri, value in zip(p, facing):
        pts = np.round(tri[:, :2] / SHADE_SCALE).astype(np.int32)
        cv2.fillConvexPoly(small, pts, float(value))
    blurred = cv2.GaussianBlur(small, (0, 0), 1.5)
    return cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR)


def colour_at(sequence: Sequence[tuple[str, int]], t_ms: float, lag_ms: float) -> np.ndarray | None:
    start = lag_ms
    for colour, ms in sequence:
        if start <= t_ms < start + ms:
            return np.array(hex_rgb(colour), np.float32)
        start += ms
    return None


def add_light(
    rgb: np.ndarray,
    light: np.ndarray,
    shading: np.ndarray | None,
    strength: float,
    background: float,
) -> np.ndarray:
    """Reflected light: each channel scaled by 1 + strength * colour * (shading or background)."""
    gain_map = (
        np.full(rgb.shape[:2], background, np.float32)
        if shading is None
        else np.maximum(shading, background)
    )
    gain = 1.0 + strength * gain_map[..., None] * light[None, None, :]
    return np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def render_flash(
    frames: Sequence[tuple[float, np.ndarray, np.ndarray | None]],
    sequence: Sequence[tuple[str, int]],
    *,
    lag_ms: float,
    strength: float,
    uniform: bool = False,
    background: float = 0.05,
) -> list[np.ndarray]:
    """Frames (t_ms, rgb, mesh) lit by the screen sequence starting at ``lag_ms``.

    ``uniform``: the attack version, the whole frame tinted alike (no face geometry)."""
    out = []
    triangles = None
    for t_ms, rgb, mesh in frames:
        light = colour_at(sequence, t_ms, lag_ms)
        if light is None:
            out.append(rgb)
            continue
        if uniform:
            out.append(add_light(rgb, light, None, strength, 1.0))
            continue
        if mesh is None:
            out.append(add_light(rgb, light, None, strength, background))
            continue
        if triangles is None:
            triangles = triangulate(mesh)
        shading = face_shading(rgb.shape[:2], mesh, triangles)
        out.append(add_light(rgb, light, shading, strength, background))
    return out
