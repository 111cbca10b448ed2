"""Colour-flash cue: does the face's colour follow the challenge's screen colours in time?

The capture page fills the screen with a random colour sequence while it records. Light from a
screen a forearm away changes the face's colour measurably and the far background much less. A
video made before the challenge existed (a replay, an animated photo, an injected stream) cannot
follow a sequence it never saw; a tint added to the whole frame moves the background as much as
the face.

Per analysed frame we keep two mean colours (``ColourSample``): skin patches picked from the
face mesh and the frame outside the head and body. The judge (pure) fits, for each lag in a
small window, ``log(colour) = a_channel + k * screen_channel(t - lag)`` and asks for

- ``flash_correlation``: the best lag's correlation between the sequence and the face's colour,
- ``flash_steps``: the share of steps whose colour, read back from the face, is the one shown,
- ``flash_face_vs_background``: at that lag, the correlation of the face's colour *relative to
  the background's* with the sequence, times the share of the face's response that the
  background does not show as well (about 1 for a lit face, about 0 for a tinted video).

Validated on reflections rendered onto real videos only (``facegate.attack.render``): no
recording in ../shared/data was made under a flashing screen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from facegate.liveness.judge import CueResult

# Skin points of the 468-point mesh: forehead (3), both cheeks (2 each), nose bridge, chin.
SKIN_POINTS = (151, 108, 337, 50, 101, 280, 330, 6, 199)
SKIN_PATCH_FRACTION = 0.1  # patch half-size as a fraction of the eye-corner distance
BACKGROUND_DOWNSCALE = 8  # every 8th pixel each way: the median needs no more
MIN_BACKGROUND_SHARE = 0.02  # of the frame, else the background is not measured
# every colour the capture page may show (facegate.liveness.challenge.FLASH_COLOURS)
FLASH_PALETTE = ("#ff0000", "#00ff00", "#0000ff", "#ffff00", "#ff00ff", "#00ffff", "#ffffff")


@dataclass(frozen=True)
class ColourSample:
    t_ms: float
    face_rgb: tuple[float, float, float]
    background_rgb: tuple[float, float, float] | None


def colour_sample(rgb: np.ndarray, mesh: np.ndarray, t_ms: float) -> ColourSample:
    """Mean skin colour and mean background colour of one frame (no pixels are kept)."""
    h, w = rgb.shape[:2]
    eye_span = float(np.linalg.norm(mesh[33, :2] - mesh[263, :2]))
    r = max(2, int(SKIN_PATCH_FRACTION * eye_span))
    patches = []
    for i in SKIN_POINTS:
        x, y = int(mesh[i, 0] + 0.5), int(mesh[i, 1] + 0.5)
        patch = rgb[max(0, y - r) : min(h, y + r + 1), max(0, x - r) : min(w, x + r + 1)]
        if patch.size:
            patches.append(patch.reshape(-1, 3).mean(axis=0))
    face = np.mean(patches, axis=0) if patches else np.zeros(3)
    # Background: the frame's outer strips (top, left, right), without the head and what is
    # below it (body), which the screen lights too.
    small = np.ascontiguousarray(rgb[::BACKGROUND_DOWNSCALE, ::BACKGROUND_DOWNSCALE])
    sh, sw = small.shape[:2]
    xy = mesh[:, :2] / BACKGROUND_DOWNSCALE
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    mask = np.zeros((sh, sw), bool)
    edge_x, edge_y = max(1, int(0.2 * sw)), max(1, int(0.15 * sh))
    mask[:, :edge_x] = mask[:, sw - edge_x :] = mask[:edge_y, :] = True
    cx, half = (x0 + x1) / 2, 0.75 * (x1 - x0)  # head and hair
    top = max(0, int(y0 - 0.3 * (y1 - y0)))
    mask[top:, max(0, int(cx - half)) : max(0, int(cx + half) + 1)] = False
    # Letterbox bars (rows or columns that are black throughout) are not background. Which
    # pixels count must not depend on the light itself (a pixel that crosses a brightness bound
    # only when lit biases the mean), so no per-pixel brightness filter: the per-channel median
    # moves exactly with a uniform change of light, unless it is itself clipped or black.
    brightest = small.max(axis=2)
    mask[:, brightest.max(axis=0) < 16] = False
    mask[brightest.max(axis=1) < 16, :] = False
    background = None
    if mask.sum() >= max(16, int(MIN_BACKGROUND_SHARE * sh * sw)):
        median = np.median(small[mask].reshape(-1, 3), axis=0)
        if median.max() < 250 and median.min() > 8:
            background = median
    return ColourSample(
        t_ms,
        tuple(float(v) for v in face),  # type: ignore[arg-type]
        None if background is None else tuple(float(v) for v in background),  # type: ignore[arg-type]
    )


def hex_rgb(colour: str) -> tuple[float, float, float]:
    c = colour.lstrip("#")
    return (int(c[0:2], 16) / 255, int(c[2:4], 16) / 255, int(c[4:6], 16) / 255)


@dataclass(frozen=True)
class FlashPolicy:
    max_lag_ms: float = 500.0  # recorder start to first colour on screen
    lag_step_ms: float = 20.0
    edge_ms: float = 60.0  # frames this close to a colour change are left out (mixed light)
    min_frames_per_step: float = 1.5
    min_correlation: float = 0.75
    min_steps_identified: float = 0.8
    min_face_vs_background: float = 0.3
    min_background_fraction: float = 0.5  # of the frames while the colours are shown
    min_face_response: float = 0.01  # log-intensity change per unit of screen light


DEFAULT_FLASH_POLICY = FlashPolicy()


def screen_light(
    sequence: Sequence[tuple[str, int]], t_ms: np.ndarray, lag_ms: float, edge_ms: float
) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) screen colour at each time (sequence starting at ``lag_ms``) and a mask of the
    times well inside a step."""
    light = np.zeros((len(t_ms), 3))
    inside = np.zeros(len(t_ms), bool)
    start = lag_ms
    for colour, ms in sequence:
        end = start + ms
        now = (t_ms >= start + edge_ms) & (t_ms < end - edge_ms)
        light[now] = hex_rgb(colour)
        inside |= now
        start = end
    return light, inside


def detrend(y: np.ndarray) -> np.ndarray:
    """Each column without its mean and linear drift (slow changes: head motion, exposure)."""
    n = len(y)
    basis = np.stack([np.ones(n), np.linspace(-1, 1, n)], axis=1)
    detrended: np.ndarray = y - basis @ (np.linalg.pinv(basis) @ y)
    return detrended


def fit_response(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Common slope k and pooled correlation of y ~ a_c + k x_c over channels, after removing
    each channel's mean and linear drift."""
    yr, xr = detrend(y), detrend(x)
    sxx, syy, sxy = float((xr * xr).sum()), float((yr * yr).sum()), float((xr * yr).sum())
    if sxx < 1e-9 or syy < 1e-12:
        return 0.0, 0.0
    return sxy / sxx, sxy / np.sqrt(sxx * syy)


def steps_identified(
    sequence: Sequence[tuple[str, int]],
    t_ms: np.ndarray,
    face: np.ndarray,
    lag_ms: float,
    k: float,
    edge_ms: float,
) -> float:
    """Share of steps whose colour, read back from the face, is the one shown.

    The face's change in each step, divided by the fitted response, estimates the screen's
    colour; it must be nearer to the challenged colour than to any other colour the page can
    show. A wrong sequence can correlate with the right one through shared channels (red and
    yellow both light red); it rarely names the right colour step after step."""
    if k <= 0:
        return 0.0
    light, inside = screen_light(sequence, t_ms, lag_ms, edge_ms)
    y, x = detrend(face[inside]), detrend(light[inside])
    palette = {c: np.array(hex_rgb(c)) for c in FLASH_PALETTE}
    start, hits, counted = lag_ms, 0, 0
    times = t_ms[inside]
    for colour, ms in sequence:
        now = (times >= start + edge_ms) & (times < start + ms - edge_ms)
        start += ms
        if not now.any():
            continue
        # what the face says the screen showed, in the same (detrended) units as the sequence
        estimate = y[now].mean(axis=0) / k - x[now].mean(axis=0) + palette[colour]
        nearest = min(palette, key=lambda c: float(np.linalg.norm(palette[c] - estimate)))
        hits += nearest == colour
        counted += 1
    return hits / len(sequence) if counted else 0.0


def best_lag(
    face: np.ndarray,
    back: np.ndarray,
    lags: np.ndarray,
    light_at: Callable[[float], tuple[np.ndarray, np.ndarray]],
    min_inside: float,
) -> tuple[float, float, float, float] | None:
    """The lag at which the face's colour follows the screen's best: (correlation, lag, the
    face's response, face-vs-background score), or None when no lag leaves enough frames.
    ``light_at(lag)`` gives the screen's light per frame and which frames fall inside a step;
    the uploaded and the streamed checks differ only there."""
    best: tuple[float, float, float, float] | None = None
    for lag in lags:
        light, inside = light_at(float(lag))
        if inside.sum() < min_inside:
            continue
        k_face, r = fit_response(face[inside], light[inside])
        if best is None or r > best[0]:
            k_rel, r_rel = fit_response(face[inside] - back[inside], light[inside])
            # correlation of the face relative to the background, times the share of the
            # face's response that the background does not also show
            share = float(np.clip(k_rel / k_face, 0.0, 1.0)) if k_face > 0 else 0.0
            best = (r, float(lag), k_face, max(r_rel, 0.0) * share)
    return best


def no_evidence(policy: FlashPolicy, detail: str) -> list[CueResult]:
    """All three flash cues failed, for the same missing evidence (fail closed)."""
    return [
        CueResult("flash_correlation", 0.0, policy.min_correlation, False, detail),
        CueResult("flash_steps", 0.0, policy.min_steps_identified, False, detail),
        CueResult("flash_face_vs_background", 0.0, policy.min_face_vs_background, False, detail),
    ]


def judge_flash(
    sequence: Sequence[tuple[str, int]],
    samples: Sequence[ColourSample],
    policy: FlashPolicy = DEFAULT_FLASH_POLICY,
) -> list[CueResult]:
    """Three cue results: correlation, colours read back step by step, face vs background.
    All fail when evidence is missing."""
    window_ms = policy.max_lag_ms + sum(ms for _, ms in sequence)
    shown = [s for s in samples if s.t_ms <= window_ms]
    usable = [s for s in shown if s.background_rgb is not None]
    if not usable or len(usable) < policy.min_background_fraction * len(shown):
        return no_evidence(
            policy, "too little background around the face (move the camera back a little)"
        )
    t = np.array([s.t_ms for s in usable])
    face = np.log1p(np.array([s.face_rgb for s in usable]))
    back = np.log1p(np.array([s.background_rgb for s in usable]))
    best = best_lag(
        face,
        back,
        np.arange(0.0, policy.max_lag_ms + 1e-6, policy.lag_step_ms),
        lambda lag: screen_light(sequence, t, lag, policy.edge_ms),
        policy.min_frames_per_step * len(sequence),
    )
    if best is None:
        return no_evidence(policy, "too few frames with a face while the colours were shown")
    r, lag, k_face, ratio = best
    steps = steps_identified(sequence, t, face, lag, k_face, policy.edge_ms)
    follows = r >= policy.min_correlation and k_face >= policy.min_face_response
    checks = (
        (
            "flash_correlation",
            max(r, 0.0),
            policy.min_correlation,
            follows,
            "the face's colour did not follow the screen's colour sequence",
        ),
        (
            "flash_steps",
            steps,
            policy.min_steps_identified,
            steps >= policy.min_steps_identified,
            "the colours on the face were not the colours shown",
        ),
        (
            "flash_face_vs_background",
            ratio,
            policy.min_face_vs_background,
            ratio >= policy.min_face_vs_background,
            "the colour changed as much away from the face as on it (a tinted video)",
        ),
    )
    return [
        CueResult(name, round(score, 4), threshold, passed, "" if passed else failure)
        for name, score, threshold, passed, failure in checks
    ]
