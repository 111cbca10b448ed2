"""Still-image screen cue, measured and not used: periodic high-frequency energy (moire).

Measured by ``bench/bench_still_cues.py`` on the real print and screen photos of
../shared/data/spoof: it does not separate them from live faces there (docs/attack-defence.md),
so no decision uses it.

A face recaptured from a screen carries the beat between the screen's pixel grid and the
camera's: narrow peaks in the 2-D spectrum at high frequencies. Skin, hair and print texture
spread their energy smoothly. The score is the strongest spectral peak in the high-frequency
band over the band's median level (in dB), after a window and with JPEG's 8-pixel block
frequencies left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CROP = 128  # the face box's centre, resampled to this size (pixels of the original or fewer)


@dataclass(frozen=True)
class ScreenPolicy:
    low: float = 0.18  # band, as a fraction of the sampling frequency (Nyquist = 0.5)
    high: float = 0.48


DEFAULT_SCREEN_POLICY = ScreenPolicy()


def face_patch(rgb: np.ndarray, box_xyxy: tuple[float, float, float, float]) -> np.ndarray | None:
    """The central 60% of the face box, grey, at most CROP pixels (never upsampled: an upsampled
    patch has no high frequencies to look at)."""
    x0, y0, x1, y1 = box_xyxy
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.3 * max(x1 - x0, y1 - y0)
    h, w = rgb.shape[:2]
    a, b = int(max(0, cx - half)), int(min(w, cx + half))
    c, d = int(max(0, cy - half)), int(min(h, cy + half))
    if b - a < 32 or d - c < 32:
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[c:d, a:b]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    side = min(CROP, b - a, d - c)
    return cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA)


def moire_peak_db(patch: np.ndarray, policy: ScreenPolicy = DEFAULT_SCREEN_POLICY) -> float:
    n = patch.shape[0]
    window = np.outer(np.hanning(n), np.hanning(n)).astype(np.float32)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2((patch - patch.mean()) * window))) ** 2
    f = np.fft.fftshift(np.fft.fftfreq(n))
    fx, fy = np.meshgrid(f, f)
    radius = np.hypot(fx, fy)
    band = (radius >= policy.low) & (radius <= policy.high)
    for k in (0.125, 0.25, 0.375, 0.5):  # JPEG block harmonics on either axis
        band &= (np.abs(np.abs(fx) - k) > 1.5 / n) & (np.abs(np.abs(fy) - k) > 1.5 / n)
    values = spectrum[band]
    if values.size < 16:
        return 0.0
    return float(10 * np.log10(values.max() / max(float(np.median(values)), 1e-12)))
