"""``facegate stream``: a camera simulator speaking the streamed liveness protocol.

Why: tests, evaluations and integrators need a client that behaves like a camera in front of a
screen: it plays a video in real time (15 fps, 480 px wide JPEG frames stamped with this
machine's clock), shows each revealed step the moment it arrives and, with ``--render-flash``,
renders the revealed colour onto the face as a real face under that screen would reflect it
(``facegate.attack.lighting``, Lambert shading from the face mesh). ``--delay-ms`` holds every
frame back before sending it, as a slow pipeline or an offline renderer would. ``run_stream``
takes any ``Source``: the evaluation's attacker (``facegate.attack.stream``, run by
``facegate eval stream``) answers each revealed step from one photo after a processing delay.
Protocol: docs/liveness-protocol.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from facegate.cli.common import EXIT_FAILED, EXIT_REFUSED, _print
from facegate.errors import InputError

FPS = 15.0
WIDTH = 480
JPEG_QUALITY = 80
REFLECTION = 0.10  # +10% at full facing: the middle of the flash evaluation's 6-12%
MAX_VIDEO_S = 30.0
VERDICT_TIMEOUT_S = 30.0


@dataclass
class Revealed:
    """The steps revealed so far, with the time (ms since the stream began) each arrived."""

    steps: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    done_at: float | None = None  # when the server said every step was covered

    def active(self, t_ms: float, kind: str) -> tuple[dict[str, Any], float] | None:
        """The step of ``kind`` on screen at ``t_ms`` (shown for its duration from arrival)."""
        for step, at in reversed(self.steps):
            if at <= t_ms:
                ok = step["kind"] == kind and t_ms < at + float(step["duration_ms"])
                return (step, at) if ok else None
        return None


class Source(Protocol):
    duration_ms: float

    def frame(self, t_ms: float, revealed: Revealed) -> np.ndarray: ...


@dataclass
class VideoSource:
    """A recorded video played in real time; optionally lit by the revealed colours."""

    times: list[float]
    frames: list[np.ndarray]
    meshes: list[np.ndarray | None]
    render_flash: bool
    duration_ms: float = 0.0
    _triangles: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.duration_ms = self.times[-1] if self.times else 0.0

    def frame(self, t_ms: float, revealed: Revealed) -> np.ndarray:
        i = max(0, int(np.searchsorted(self.times, t_ms, side="right")) - 1)
        rgb, mesh = self.frames[i], self.meshes[i]
        shown = revealed.active(t_ms, "colour") if self.render_flash else None
        if shown is None:
            return rgb
        return lit(rgb, mesh, str(shown[0]["colour"]), self)


def lit(rgb: np.ndarray, mesh: np.ndarray | None, colour: str, cache: Any) -> np.ndarray:
    """The frame under a screen of ``colour``: the face by its mesh normals, the background at
    5% of that (``facegate.attack.lighting``)."""
    from facegate.attack.lighting import add_light, face_shading
    from facegate.attack.synth import triangulate
    from facegate.liveness.flash import hex_rgb

    light = np.array(hex_rgb(colour), np.float32)
    if mesh is None:
        return add_light(rgb, light, None, REFLECTION, 0.05)
    if cache._triangles is None:
        cache._triangles = triangulate(mesh)
    shading = face_shading(rgb.shape[:2], mesh, cache._triangles)
    return add_light(rgb, light, shading, REFLECTION, 0.05)


def load_video(path: Path, render_flash: bool) -> VideoSource:
    """Frames on a 15 fps grid, 480 px wide; with ``render_flash`` each with its face mesh."""
    from facegate.liveness.video import VideoLimits, read_frames

    if not path.is_file():
        raise InputError("no such video file", code="file_not_found", file=str(path))
    limits = VideoLimits(max_seconds=MAX_VIDEO_S, max_bytes=200 << 20)
    times: list[float] = []
    frames: list[np.ndarray] = []
    for f in read_frames(path.read_bytes(), limits):
        h, w = f.rgb.shape[:2]
        scale = min(1.0, WIDTH / w)
        size = (int(w * scale) // 2 * 2, int(h * scale) // 2 * 2)
        frames.append(cv2.resize(f.rgb, size, interpolation=cv2.INTER_AREA))
        times.append(f.t_ms)
    meshes: list[np.ndarray | None] = [None] * len(frames)
    if render_flash and frames:
        from facegate.engine.pipeline import FaceEngine
        from facegate.liveness.signals import FaceTracker, IrisModel

        engine = FaceEngine()
        tracker = FaceTracker(engine.detector, engine.mesh, IrisModel(1))
        for k, (t, rgb) in enumerate(zip(times, frames)):
            meshes[k] = tracker.track(rgb, t).mesh
    if not frames:
        raise InputError("the video has no frames", code="no_frames")
    return VideoSource(times, frames, meshes, render_flash)


def ws_url(server: str) -> str:
    parts = urlsplit(server if "://" in server else "http://" + server)
    scheme = {"https": "wss", "wss": "wss"}.get(parts.scheme, "ws")
    return urlunsplit((scheme, parts.netloc, "/v1/liveness/stream", "", ""))


def encode(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise RuntimeError("jpeg")
    return bytes(buf)


async def run_stream(
    server: str,
    start: dict[str, Any],
    source: Source,
    *,
    key: str | None = None,
    delay_ms: float = 0.0,
    jitter_ms: float = 0.0,
    seed: int = 0,
    stop_when_done: bool = False,
) -> dict[str, Any]:
    """Stream ``source`` in real time; the server's verdict (or error) with client figures.

    ``delay_ms`` holds every frame back that long after its capture; ``jitter_ms`` adds a random
    0..jitter_ms to each frame's delay on top (a mobile uplink), keeping the order. A recorded
    video plays to its end (its actions come when they come); ``stop_when_done`` ends the
    stream once the server says every step was covered (a live answerer, the page)."""
    import websockets

    rng = np.random.default_rng(seed)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    revealed, queue = Revealed(), deque[tuple[float, bytes]]()
    sent_bytes = frames_sent = 0
    out: dict[str, Any] = {}
    async with websockets.connect(
        ws_url(server), additional_headers=headers, max_size=1 << 20
    ) as ws:
        await ws.send(json.dumps({"type": "start", **start}))
        first = json.loads(await asyncio.wait_for(ws.recv(), VERDICT_TIMEOUT_S))
        if first.get("type") != "ready":
            return first
        t0 = time.monotonic() * 1000
        last_sent = 0.0

        async def receive() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "step":
                    revealed.steps.append((msg, time.monotonic() * 1000 - t0))
                elif msg.get("type") == "steps_done":
                    revealed.done_at = time.monotonic() * 1000 - t0
                elif msg.get("type") in ("verdict", "error"):
                    out.update(msg)
                    return

        listener = asyncio.create_task(receive())
        k, release_at = 0, 0.0
        while not listener.done():
            now = time.monotonic() * 1000 - t0
            end_ms = source.duration_ms
            if stop_when_done and revealed.done_at is not None:
                end_ms = min(end_ms, revealed.done_at + 300)
            if k * 1000 / FPS <= min(now, end_ms):
                t = k * 1000 / FPS
                jpeg = encode(source.frame(t, revealed))
                extra = float(rng.uniform(0, jitter_ms)) if jitter_ms else 0.0
                release_at = max(release_at, t + delay_ms + extra)
                queue.append((release_at, struct.pack("<d", t0 + t) + jpeg))
                k += 1
            while queue and queue[0][0] <= now:
                _, payload = queue.popleft()
                await ws.send(payload)
                sent_bytes += len(payload)
                frames_sent += 1
                last_sent = time.monotonic()
            if k * 1000 / FPS > end_ms and not queue:
                await ws.send(json.dumps({"type": "end"}))
                break
            await asyncio.sleep(0.005)
        try:
            await asyncio.wait_for(listener, VERDICT_TIMEOUT_S)
        except TimeoutError:
            listener.cancel()
        seconds = max(frames_sent / FPS, 1e-3)
        out["client"] = {
            "frames_sent": frames_sent,
            "bytes_sent": sent_bytes,
            "bytes_per_s": round(sent_bytes / seconds),
            "last_frame_to_decision_ms": (
                round((time.monotonic() - last_sent) * 1000, 1) if frames_sent else None
            ),
            "steps_revealed": len(revealed.steps),
        }
    return out


def cmd_stream(args: argparse.Namespace) -> int:
    """Play VIDEO through the protocol; print the verdict. Exit 0 when a verdict came back."""
    if args.flow not in ("enroll", "verify"):
        raise InputError("flow must be enroll or verify", code="bad_request")
    if args.delay_ms < 0 or args.delay_ms > 60_000:
        raise InputError("--delay-ms must be 0 to 60000", code="bad_request")
    source = load_video(Path(args.video), args.render_flash)
    start: dict[str, Any] = {"subject_id": args.subject, "purpose": args.flow}
    if args.actions:
        start["actions"] = [a.strip() for a in args.actions.split(",") if a.strip()]
    try:
        result = asyncio.run(
            run_stream(args.server, start, source, key=args.key, delay_ms=args.delay_ms)
        )
    except OSError as exc:
        _print({"error": "connection_failed", "message": type(exc).__name__})
        return EXIT_FAILED
    if result.get("type") == "verdict":
        result.pop("type")
        _print(result)
        return 0
    _print({"error": result.get("code", "no_verdict"), "message": result.get("message", "")})
    status = int(result.get("status", 500))
    return EXIT_REFUSED if 400 <= status < 500 else EXIT_FAILED


def add_parser(sub: Any) -> None:
    """``facegate stream``: exactly the flags of the contract (issue 15)."""
    p = sub.add_parser("stream", help="play a video through the streamed liveness protocol")
    p.add_argument("video")
    p.add_argument("--server", required=True, help="the service's URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--key", required=True, help="an API key with the flow's role")
    p.add_argument("--subject", required=True, help="the subject id")
    p.add_argument("--flow", default="verify", choices=["enroll", "verify"])
    p.add_argument("--actions", help="evaluation tenants only: the actions, e.g. blink,turn_left")
    p.add_argument(
        "--render-flash", action="store_true", help="render each revealed colour onto the face"
    )
    p.add_argument("--delay-ms", type=float, default=0.0, help="hold every frame back N ms")
    p.set_defaults(func=cmd_stream)


def summary(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accepted share of verdicts (for the evaluations)."""
    live = sum(bool(r.get("live")) for r in results)
    return {"live": live, "total": len(results)}
