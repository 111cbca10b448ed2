"""Read a bounded video into sampled RGB frames, in memory, through OpenCV.

Limits are checked before and while decoding: bytes, resolution, duration, frame count.
Frames are never written anywhere; OpenCV reads the bytes through an in-memory stream reader.
"""

from __future__ import annotations

import io
import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np

from facegate.errors import InputError, TooLargeError


@dataclass(frozen=True)
class VideoLimits:
    max_bytes: int = 30 * 1024 * 1024
    max_seconds: float = 15.0
    max_long_side: int = 1920
    max_short_side: int = 1080
    max_decoded_frames: int = 1200  # a hard stop whatever the container claims
    analysis_fps: float = 15.0


DEFAULT_VIDEO_LIMITS = VideoLimits()


@dataclass(frozen=True)
class Frame:
    index: int
    t_ms: float
    rgb: np.ndarray


def read_frames(data: bytes, limits: VideoLimits = DEFAULT_VIDEO_LIMITS) -> Iterator[Frame]:
    """Yield frames sampled at most ``limits.analysis_fps``; raise ``InputError`` on bad input.

    Whatever the decoder raises on the client's bytes becomes ``corrupt_video`` (400), never a
    server fault (``tests/unit/test_decode_fuzz.py`` mutates real videos to hold that)."""
    if not data:
        raise InputError("the video is empty", code="empty_file")
    if len(data) > limits.max_bytes:
        raise TooLargeError(
            "the video is larger than the byte limit",
            code="video_too_large",
            bytes=len(data),
            limit=limits.max_bytes,
        )
    # OpenCV (>= 4.10) reads from any io.BufferedIOBase, so the bytes never touch the disk.
    # It does not keep the stream alive itself: ``stream`` must outlive ``cap`` (else a segfault).
    stream = SafeStream(data)
    try:
        # (OpenCV's stubs know only its own IStreamReader, not the Python file objects it accepts)
        cap = cv2.VideoCapture(stream, cv2.CAP_FFMPEG, [])  # type: ignore[call-overload]
    except cv2.error as exc:
        raise InputError("the file is not a readable video", code="not_a_video") from exc
    try:
        yield from _frames(cap, limits)
    except cv2.error as exc:
        raise InputError("the video data is corrupt", code="corrupt_video") from exc
    finally:
        cap.release()
        stream.close()


class SafeStream(io.BytesIO):
    """The bytes as the stream OpenCV reads, answering a bad seek with -1 instead of raising.

    Why: FFmpeg seeks wherever a container's offsets point, negative ones included; ``BytesIO``
    raises ``ValueError`` on those, and OpenCV's Python stream reader does not survive an
    exception from ``seek``: the process dies (a segfault found by fuzzing a mutated AVI, which
    took the whole worker down). -1 is the failed seek FFmpeg expects and handles."""

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        try:
            return super().seek(offset, whence)
        except (ValueError, OverflowError, OSError):
            return -1

    def read(self, size: int | None = -1) -> bytes:
        try:
            return super().read(size)
        except (ValueError, OverflowError, OSError):
            return b""


def header_seconds(fps: float, count: float) -> float | None:
    """The duration the container's header claims, or None when it does not say.

    The frame count OpenCV reports is the container's duration times its own frame rate, so
    their ratio is the duration even when that rate is no frame rate at all: a browser's WebM
    reports its 1 ms time base as 1000 fps (and 3000 "frames" for 3 s). Clamping that rate to a
    plausible one first (as this module once did) read a 3 s recording as 100 s long."""
    if math.isfinite(fps) and fps > 0 and math.isfinite(count) and count > 0:
        return count / fps
    return None


def _frames(cap: cv2.VideoCapture, limits: VideoLimits) -> Iterator[Frame]:
    if not cap.isOpened():
        raise InputError("the file is not a readable video", code="not_a_video")
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if max(width, height) > limits.max_long_side or min(width, height) > limits.max_short_side:
        raise TooLargeError(
            "the video resolution is over the limit",
            code="video_resolution_too_high",
            width=width,
            height=height,
            limit=f"{limits.max_long_side}x{limits.max_short_side}",
        )
    header_fps = cap.get(cv2.CAP_PROP_FPS)
    seconds = header_seconds(header_fps, cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if seconds is not None and seconds > limits.max_seconds + 0.5:  # early; timestamps decide
        raise TooLargeError(
            "the video is longer than allowed",
            code="video_too_long",
            seconds=round(seconds, 2),
            limit=limits.max_seconds,
        )
    # for a frame without a usable timestamp only: a plausible rate, else 30
    fps = header_fps if math.isfinite(header_fps) and 0 < header_fps <= 240 else 30.0
    # Sample by time, not by frame count: browser recordings (WebM from MediaRecorder) have a
    # variable frame rate and often no usable fps in their header.
    min_gap_ms = 0.9 * 1000.0 / limits.analysis_fps
    last_ms = -1e9
    index = 0
    yielded = 0
    while index < limits.max_decoded_frames:
        if not cap.grab():
            break
        pos_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
        t_ms = (
            pos_ms if math.isfinite(pos_ms) and (pos_ms > 0 or index == 0) else index * 1000.0 / fps
        )
        if t_ms > limits.max_seconds * 1000 + 500:
            raise TooLargeError(
                "the video is longer than allowed",
                code="video_too_long",
                limit=limits.max_seconds,
            )
        if t_ms - last_ms >= min_gap_ms:
            ok, bgr = cap.retrieve()
            if ok and bgr is not None and bgr.ndim == 3 and bgr.shape[2] == 3:
                last_ms = t_ms
                yielded += 1
                yield Frame(index, t_ms, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        index += 1
    if yielded == 0:
        raise InputError("the video has no decodable frames", code="no_frames")


T = TypeVar("T")
_END = object()


def prefetch(items: Iterator[T], depth: int = 3) -> Iterator[T]:
    """Run ``items`` in a background thread, ``depth`` ahead: decoding the next frame (OpenCV
    releases the GIL) overlaps with analysing this one. Errors are re-raised here; stopping
    early stops the producer."""
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_END)
        except BaseException as exc:  # handed to the consumer
            offer(exc)

    worker = threading.Thread(target=produce, name="facegate-decode", daemon=True)
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while not buffer.empty():  # let a blocked producer finish
            buffer.get_nowait()
        worker.join(timeout=5)
