"""Frames in and out for the attack generator: track a video's mesh, write frames as MP4.

Only for evaluation material (../shared/data and what is made from it); the service never
writes frames anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facegate.engine.pipeline import FaceEngine
from facegate.liveness.signals import FaceTracker, IrisModel
from facegate.liveness.video import VideoLimits, read_frames


@dataclass
class TrackedFrame:
    t_ms: float
    rgb: np.ndarray
    mesh: np.ndarray | None  # (468, 3) image pixels, None where no face was tracked


def track_video(
    engine: FaceEngine, iris: IrisModel, data: bytes, limits: VideoLimits
) -> list[TrackedFrame]:
    tracker = FaceTracker(engine.detector, engine.mesh, iris)
    out = []
    for frame in read_frames(data, limits):
        sig = tracker.step(frame.rgb, frame.t_ms)
        mesh = sig.landmarks.mesh if sig.face and sig.landmarks is not None else None
        out.append(TrackedFrame(frame.t_ms, frame.rgb, mesh))
    return out


def on_time_grid(frames: list[TrackedFrame], fps: float = 15.0) -> list[TrackedFrame]:
    """The frames shown at times k/fps (the latest frame at or before each time), so that the
    written video's timestamps are the times the renderer used."""
    out: list[TrackedFrame] = []
    if not frames:
        return out
    j, k = 0, 0
    end = frames[-1].t_ms
    while k * 1000.0 / fps <= end:
        t = k * 1000.0 / fps
        while j + 1 < len(frames) and frames[j + 1].t_ms <= t:
            j += 1
        out.append(TrackedFrame(t, frames[j].rgb, frames[j].mesh))
        k += 1
    return out


def write_video(frames: list[np.ndarray], path: Path, fps: float = 15.0) -> Path:
    """Write RGB frames as MPEG-4 Part 2 (OpenCV's built-in encoder) at high quality."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path
