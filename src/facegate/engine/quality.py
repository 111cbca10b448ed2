"""Quality gate: each check is a measured value against a bound, with a reason when it fails.

All functions are pure over arrays. Bounds are deliberately loose floors (see ``QualityBounds``):
they refuse images a human would also refuse, not merely unusual ones; the distributions on
../shared/data/faces that they were set against are in docs/quality.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from facegate.types import FaceBox, Landmarks, QualityCheck

# Mesh points used for pose: cheek edges (left/right of the image), forehead top, chin.
_CHEEK_LEFT, _CHEEK_RIGHT, _FOREHEAD, _CHIN = 234, 454, 10, 152


@dataclass(frozen=True)
class QualityBounds:
    min_interocular_px: float = 20.0
    min_sharpness: float = 20.0  # variance of the Laplacian on the 112x112 grey chip centre
    min_brightness: float = 35.0  # mean grey level of the chip centre, 0..255
    max_brightness: float = 225.0
    max_abs_yaw_deg: float = 40.0
    max_abs_pitch_deg: float = 35.0
    min_presence: float = 0.5  # the mesh model's own face-presence score


DEFAULT_BOUNDS = QualityBounds()


def head_pose_deg(mesh: np.ndarray) -> tuple[float, float, float]:
    """Approximate (yaw, pitch, roll) in degrees from a (468, 3) mesh in pixel units.

    Yaw from the depth difference across the cheeks, pitch from forehead-to-chin depth, roll
    from the eye line. Good to a few degrees near frontal, which is all the gate needs.
    """
    left, right = mesh[_CHEEK_LEFT], mesh[_CHEEK_RIGHT]
    top, chin = mesh[_FOREHEAD], mesh[_CHIN]
    yaw = math.degrees(
        math.atan2(float(right[2] - left[2]), float(np.hypot(*(right[:2] - left[:2]))))
    )
    pitch = math.degrees(
        math.atan2(float(chin[2] - top[2]), float(np.hypot(*(chin[:2] - top[:2]))))
    )
    eye_l = mesh[[33, 133], :2].mean(axis=0)
    eye_r = mesh[[263, 362], :2].mean(axis=0)
    roll = math.degrees(math.atan2(float(eye_r[1] - eye_l[1]), float(eye_r[0] - eye_l[0])))
    return yaw, pitch, roll


def chip_centre_grey(chip: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    return grey[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]


def sharpness(chip: np.ndarray) -> float:
    """Variance of the Laplacian over the chip centre: low means blurred."""
    return float(cv2.Laplacian(chip_centre_grey(chip), cv2.CV_64F).var())


def brightness(chip: np.ndarray) -> float:
    return float(chip_centre_grey(chip).mean())


def assess(
    box: FaceBox, landmarks: Landmarks, chip: np.ndarray, bounds: QualityBounds = DEFAULT_BOUNDS
) -> list[QualityCheck]:
    """Run every check on one face; the caller decides what a failure means.

    Exposure comes before sharpness: a dark face also has little Laplacian energy, and the
    first failed check is the reason shown to the user.
    """
    checks = [
        QualityCheck(
            "face_presence",
            landmarks.presence,
            landmarks.presence >= bounds.min_presence,
            f">= {bounds.min_presence}",
            "" if landmarks.presence >= bounds.min_presence else "no_face",
        ),
    ]
    iod = landmarks.interocular_px
    ok = iod >= bounds.min_interocular_px
    checks.append(
        QualityCheck(
            "interocular_px",
            iod,
            ok,
            f">= {bounds.min_interocular_px}",
            "" if ok else "face_too_small",
        )
    )
    light = brightness(chip)
    if light < bounds.min_brightness:
        reason = "too_dark"
    elif light > bounds.max_brightness:
        reason = "overexposed"
    else:
        reason = ""
    checks.append(
        QualityCheck(
            "brightness",
            light,
            not reason,
            f"{bounds.min_brightness}..{bounds.max_brightness}",
            reason,
        )
    )
    sharp = sharpness(chip)
    ok = sharp >= bounds.min_sharpness
    checks.append(
        QualityCheck("sharpness", sharp, ok, f">= {bounds.min_sharpness}", "" if ok else "blurred")
    )
    if landmarks.mesh is not None:
        yaw, pitch, _ = head_pose_deg(landmarks.mesh)
        ok = abs(yaw) <= bounds.max_abs_yaw_deg
        checks.append(
            QualityCheck(
                "yaw_deg",
                yaw,
                ok,
                f"|yaw| <= {bounds.max_abs_yaw_deg}",
                "" if ok else "head_turned",
            )
        )
        ok = abs(pitch) <= bounds.max_abs_pitch_deg
        checks.append(
            QualityCheck(
                "pitch_deg",
                pitch,
                ok,
                f"|pitch| <= {bounds.max_abs_pitch_deg}",
                "" if ok else "head_tilted",
            )
        )
    return checks
