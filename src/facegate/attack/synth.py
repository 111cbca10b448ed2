"""Synthetic presentation attacks made from still photos and real videos (pure numpy/OpenCV).

- ``photo_on_stick``: a printed photo held up and tilted, flat or bent, to answer head actions.
- ``emulator``: the "35-RMB kit": one photo warped by its own face mesh to blink, turn, nod and
  open the mouth on command (landmark-driven dense warp).
- ``screen_replay``: any frames as recaptured from a screen: bezel, gamma, colour cast, moire.
- ``splice``: the first part of one person's video followed by another person's.

Frames are RGB uint8 at a fixed frame rate; times come from the ``Timeline``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from random import Random

import cv2
import numpy as np

from facegate.attack.timeline import Timeline

FPS = 15.0
FRAME_SIZE = (640, 480)  # width, height

# eyelid points of the 468-point mesh, upper lid paired with the lower lid below it
UPPER_LIDS = (
    (246, 161, 160, 159, 158, 157, 173),
    (466, 388, 387, 386, 385, 384, 398),
)
LOWER_LIDS = (
    (7, 163, 144, 145, 153, 154, 155),
    (249, 390, 373, 374, 380, 381, 382),
)
# the eyelid crease above each upper lid: comes halfway down with it
LID_CREASES = (
    (247, 30, 29, 27, 28, 56, 190),
    (467, 260, 259, 257, 258, 286, 414),
)
# lower lip (inner and outer) and chin: they drop when the mouth opens
LOWER_MOUTH = (
    14,
    87,
    178,
    88,
    95,
    317,
    402,
    318,
    324,
    17,
    84,
    181,
    91,
    146,
    314,
    405,
    321,
    375,
    152,
    148,
    176,
    149,
    150,
    377,
    400,
    378,
    379,
    200,
    199,
    175,
    18,
    83,
    313,
    201,
    421,
    208,
    428,
)


def times(total_ms: float, fps: float = FPS) -> list[float]:
    return [k * 1000.0 / fps for k in range(int(total_ms * fps / 1000.0) + 1)]


def room(rng: Random, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """A plain, softly lit wall with sensor noise."""
    w, h = size
    base = np.array([rng.uniform(90, 200) for _ in range(3)], np.float32)
    gradient = np.linspace(0.8, 1.1, w, dtype=np.float32)[None, :, None]
    img = base[None, None, :] * gradient * np.ones((h, 1, 1), np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def add_noise(rgb: np.ndarray, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    return np.clip(rgb + rng.normal(0, sigma, rgb.shape), 0, 255).astype(np.uint8)


# --- a photo on a stick ------------------------------------------------------------------


def card_corners(
    w: float,
    h: float,
    yaw_deg: float,
    pitch_deg: float,
    centre: tuple[float, float],
    height_px: float,
    bend: float = 0.0,
    columns: int = 1,
) -> np.ndarray:
    """Image positions (columns + 1, 2, 2) of the top and bottom edge points of a card of
    aspect w:h, rotated in 3-D and seen by a pinhole camera (focal length = frame width)."""
    f = FRAME_SIZE[0]
    scale = height_px / h
    distance = f  # the card's height in pixels at that distance is height_px
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = np.array(
        [[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]]
    )
    rx = np.array(
        [[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]]
    )
    out = []
    for x in np.linspace(-w / 2, w / 2, columns + 1):
        z = bend * (x / (w / 2)) ** 2 * w / 2  # a bent card: its edges come forward
        pts = []
        for y in (-h / 2, h / 2):
            p = rx @ ry @ np.array([x * scale, y * scale, -z * scale]) + np.array([0, 0, distance])
            pts.append((centre[0] + f * p[0] / p[2], centre[1] + f * p[1] / p[2]))
        out.append(pts)
    return np.array(out, np.float32)


def warp_card(canvas: np.ndarray, photo: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Paste the photo onto the canvas strip by strip (one homography per strip)."""
    h, w = photo.shape[:2]
    columns = len(corners) - 1
    xs = np.linspace(0, w, columns + 1)
    out = canvas.copy()
    size = (canvas.shape[1], canvas.shape[0])
    for k in range(columns):
        src = np.array([[xs[k], 0], [xs[k + 1], 0], [xs[k + 1], h], [xs[k], h]], np.float32)
        dst = np.array(
            [corners[k][0], corners[k + 1][0], corners[k + 1][1], corners[k][1]], np.float32
        )
        m = cv2.getPerspectiveTransform(src, dst)
        warped = cv2.warpPerspective(photo, m, size, flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), m, size)
        out[mask > 127] = warped[mask > 127]
    return out


def photo_on_stick(photo: np.ndarray, timeline: Timeline, rng: Random) -> list[np.ndarray]:
    """The printed photo tilted like a head would turn (yaw/pitch of the card = the action's),
    with hand tremor; a third of the prints are bent."""
    noise = np.random.default_rng(rng.getrandbits(32))
    wall = room(rng)
    h, w = photo.shape[:2]
    height = rng.uniform(300, 380)
    bend = rng.choice([0.0, 0.0, rng.uniform(0.1, 0.25)])
    columns = 12 if bend else 1
    frames = []
    for t in times(timeline.total_ms):
        pose = timeline.pose(t)
        tremor = (3 * math.sin(t / 170.0), 2 * math.sin(t / 230.0 + 1))
        centre = (FRAME_SIZE[0] / 2 + tremor[0], FRAME_SIZE[1] / 2 + tremor[1])
        corners = card_corners(w, h, pose.yaw_deg, pose.pitch_deg, centre, height, bend, columns)
        frames.append(add_noise(warp_card(wall, photo, corners), noise))
    return frames


# --- the emulator: a photo animated by its own mesh ----------------------------------------


def rotate_mesh(mesh: np.ndarray, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """The mesh turned about a point inside the head (orthographic), in the engine's sign
    convention (MediaPipe z grows away from the camera)."""
    width = float(np.ptp(mesh[:, 0]))
    centre = np.array([mesh[:, 0].mean(), mesh[:, 1].mean(), mesh[:, 2].min() + 0.6 * width])
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    # a positive yaw moves the nose to image-right, a positive pitch moves it down
    ry = np.array(
        [[math.cos(yaw), 0, -math.sin(yaw)], [0, 1, 0], [math.sin(yaw), 0, math.cos(yaw)]]
    )
    rx = np.array(
        [[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]]
    )
    return (mesh - centre) @ (rx @ ry).T + centre


def posed_mesh(mesh: np.ndarray, yaw: float, pitch: float, eyes: float, mouth: float) -> np.ndarray:
    out = rotate_mesh(mesh, yaw, pitch)
    for upper, lower, crease in zip(UPPER_LIDS, LOWER_LIDS, LID_CREASES):
        for u, lo, c in zip(upper, lower, crease):
            drop = out[lo, :2] - out[u, :2]
            out[u, :2] += 0.95 * eyes * drop
            out[c, :2] += 0.5 * eyes * drop
    width = float(np.linalg.norm(out[61, :2] - out[291, :2]))
    down = out[152, :2] - out[10, :2]
    down = down / max(float(np.linalg.norm(down)), 1e-6)
    for i in LOWER_MOUTH:
        out[i, :2] += 0.45 * mouth * width * down
    return out


def anchor_points(mesh: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Points that stay put: a ring around the face (1.5x its size) and the frame's border."""
    h, w = shape
    xy = mesh[:, :2]
    centre = xy.mean(axis=0)
    radius = 0.75 * float(np.ptp(xy, axis=0).max())
    ring = [
        centre + radius * np.array([math.cos(a), math.sin(a)])
        for a in np.linspace(0, 2 * math.pi, 24, endpoint=False)
    ]
    border = [
        (x, y) for x in (0, w / 2, w - 1) for y in (0, h / 2, h - 1) if (x, y) != (w / 2, h / 2)
    ]
    pts = np.array(ring + border, np.float32)
    pts[:, 0] = np.clip(pts[:, 0], 0, w - 1)
    pts[:, 1] = np.clip(pts[:, 1], 0, h - 1)
    return pts


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (m, 3) of 2-D points, as indices into ``points``."""
    xy = np.asarray(points, np.float32)[:, :2]
    (x0, y0), (x1, y1) = np.floor(xy.min(axis=0)) - 2, np.ceil(xy.max(axis=0)) + 2
    subdiv = cv2.Subdiv2D((int(x0), int(y0), int(x1 - x0) + 1, int(y1 - y0) + 1))
    for x, y in xy:
        subdiv.insert((float(x), float(y)))
    index = {(round(float(x), 2), round(float(y), 2)): i for i, (x, y) in enumerate(xy)}
    out = []
    for tri in np.asarray(subdiv.getTriangleList()).reshape(-1, 3, 2):
        ids = [index.get((round(float(x), 2), round(float(y), 2))) for x, y in tri]
        if None not in ids:
            out.append(ids)
    return np.array(out, np.int32)


def piecewise_affine(
    image: np.ndarray,
    source: np.ndarray,
    target: np.ndarray,
    triangles: np.ndarray,
    depth: np.ndarray | None = None,
) -> np.ndarray:
    """Warp so that each source triangle lands on its target triangle (backward mapping).
    With ``depth`` per point, far triangles are drawn first so that near ones cover them."""
    h, w = image.shape[:2]
    label = np.full((h, w), -1, np.int32)
    affines = np.zeros((len(triangles), 2, 3), np.float32)
    # far triangles first when depth is known, else in their own order
    order = (
        np.argsort(-depth[triangles].mean(axis=1))
        if depth is not None
        else np.arange(len(triangles))
    )
    for k in order:
        tri = triangles[k]
        affines[k] = cv2.getAffineTransform(
            target[tri].astype(np.float32), source[tri].astype(np.float32)
        )
        cv2.fillConvexPoly(label, np.round(target[tri]).astype(np.int32), int(k))
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    a = affines[np.maximum(label, 0)]
    map_x = a[..., 0, 0] * gx + a[..., 0, 1] * gy + a[..., 0, 2]
    map_y = a[..., 1, 0] * gx + a[..., 1, 1] * gy + a[..., 1, 2]
    outside = label < 0
    map_x[outside], map_y[outside] = gx[outside], gy[outside]
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def emulator(
    photo: np.ndarray, mesh: np.ndarray, timeline: Timeline, rng: Random, gain: float = 1.4
) -> list[np.ndarray]:
    """The photo made to perform the timeline: its mesh rotated and edited, the picture warped
    triangle by triangle to follow. ``gain`` exaggerates the turns, as kit users do until the
    checker is satisfied (a warped photo reads as less rotated than asked)."""
    noise = np.random.default_rng(rng.getrandbits(32))
    anchors = anchor_points(mesh, photo.shape[:2])
    source = np.vstack([mesh[:, :2], anchors])
    triangles = triangulate(source)
    frames = []
    for t in times(timeline.total_ms):
        p = timeline.pose(t)
        if p == type(p)():
            frame = photo
        else:
            posed = posed_mesh(
                mesh, gain * p.yaw_deg, gain * p.pitch_deg, p.eyes_closed, p.mouth_open
            )
            depth = np.concatenate([posed[:, 2], np.full(len(anchors), posed[:, 2].max() + 1)])
            frame = piecewise_affine(
                photo, source, np.vstack([posed[:, :2], anchors]), triangles, depth
            )
        frames.append(add_noise(frame, noise, 1.5))
    return frames


# --- screen replay --------------------------------------------------------------------------


def screen_replay(frames: Sequence[np.ndarray], rng: Random) -> list[np.ndarray]:
    """Frames as a camera sees them on a phone or monitor held in front of it."""
    noise = np.random.default_rng(rng.getrandbits(32))
    wall = room(rng)
    fw, fh = FRAME_SIZE
    src_h, src_w = frames[0].shape[:2]
    scale = rng.uniform(0.7, 0.9) * min(fw / src_w, fh / src_h)
    sw, sh = src_w * scale, src_h * scale
    bezel = rng.uniform(0.03, 0.08) * sw
    tilt_x, tilt_y = rng.uniform(-0.04, 0.04) * sw, rng.uniform(-0.04, 0.04) * sh
    cx, cy = fw / 2 + rng.uniform(-20, 20), fh / 2 + rng.uniform(-15, 15)
    quad = np.array(
        [
            [cx - sw / 2 + tilt_x, cy - sh / 2 + tilt_y],
            [cx + sw / 2 - tilt_x, cy - sh / 2 - tilt_y],
            [cx + sw / 2 + tilt_x, cy + sh / 2 + tilt_y],
            [cx - sw / 2 - tilt_x, cy + sh / 2 - tilt_y],
        ],
        np.float32,
    )
    outer = quad + np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32) * bezel
    gamma = rng.uniform(0.75, 1.35)
    cast = np.array([rng.uniform(0.9, 1.0), rng.uniform(0.95, 1.05), rng.uniform(1.0, 1.12)])
    # moire: the camera's pixel grid beating against the screen's, a fine tilted grating
    period = rng.uniform(2.5, 6.0)
    angle = rng.uniform(0, math.pi)
    depth = rng.uniform(0.06, 0.15)
    gx, gy = np.meshgrid(np.arange(fw), np.arange(fh))
    grating = 1 + depth * np.cos(
        2 * math.pi * (gx * math.cos(angle) + gy * math.sin(angle)) / period
    )
    src = np.array([[0, 0], [src_w, 0], [src_w, src_h], [0, src_h]], np.float32)
    m = cv2.getPerspectiveTransform(src, quad)
    mask = cv2.warpPerspective(np.full((src_h, src_w), 255, np.uint8), m, (fw, fh)) > 127
    base = wall.copy()
    cv2.fillConvexPoly(base, outer.astype(np.int32), (15, 15, 18))
    out = []
    for frame in frames:
        shown = 255.0 * (frame / 255.0) ** gamma * cast
        warped = cv2.warpPerspective(np.clip(shown, 0, 255).astype(np.uint8), m, (fw, fh))
        img = base.astype(np.float32)
        img[mask] = warped[mask] * grating[mask][:, None]
        blurred = cv2.GaussianBlur(img, (0, 0), 0.6)
        out.append(add_noise(np.clip(blurred, 0, 255), noise, 2.5))
    return out


# --- splice ---------------------------------------------------------------------------------


def fit_frame(rgb: np.ndarray, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """Letterbox into the frame size."""
    w, h = size
    s = min(w / rgb.shape[1], h / rgb.shape[0])
    small = cv2.resize(
        rgb, (int(rgb.shape[1] * s), int(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA
    )
    out = np.zeros((h, w, 3), np.uint8)
    y, x = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


def splice(first: Sequence[np.ndarray], second: Sequence[np.ndarray], cut: int) -> list[np.ndarray]:
    """``first`` up to frame ``cut``, then ``second`` from there on."""
    n = min(len(first), len(second))
    return [fit_frame(f) for f in first[:cut]] + [fit_frame(f) for f in second[cut:n]]
