"""The streaming attacker: the emulator kit answering a streamed challenge live, step by step.

Why: the streamed protocol (docs/liveness-protocol.md) reveals each colour and action only after
frames covering the previous step arrived, so an offline renderer has nothing to prepare. What
remains is a renderer that answers *live*, and the question the evaluation asks is how fast it
must be. This one warps one photo (``facegate.attack.synth``) to perform each revealed action and
renders each revealed colour onto the warped face (the Lambert shading and reflection strength
``facegate stream --render-flash`` uses for a real face), ``processing_ms`` after the step
arrived: the renderer's processing delay. Its frames are stamped honestly, so the only thing
the server can see is how late the answers come. It is a ``Source`` for
``facegate.cli.stream_cmds.run_stream``.

Evaluation material only (like the rest of ``facegate.attack``): ``facegate eval stream``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facegate.attack.lighting import add_light, face_shading
from facegate.attack.make import PhotoFace
from facegate.attack.synth import anchor_points, piecewise_affine, posed_mesh, triangulate
from facegate.cli.stream_cmds import REFLECTION, Revealed
from facegate.liveness.actions import ACTIONS
from facegate.liveness.flash import hex_rgb

# (yaw, pitch) in degrees at the peak of each head action; the warp exaggerates by POSE_GAIN
# because a 2-D warp of a frontal photo under-reads as a turn to the pose estimator.
HEAD_POSE: dict[str, tuple[float, float]] = {
    "turn_left": (32.0, 0.0),
    "turn_right": (-32.0, 0.0),
    "look_up": (0.0, -24.0),
    "look_down": (0.0, 24.0),
}
POSE_GAIN = 1.4
ACTION_MS = 1000.0  # a head action or an open mouth: one smooth bump
BLINK_MS = 300.0
NOISE_SIGMA = 1.5  # sensor noise, so consecutive frames are not byte-identical
PHASES = 16  # rendered points of each action's bump (15 fps: at most 15 frames per bump)


class StreamingEmulator:
    """One photo animated live: each revealed step answered ``processing_ms`` after it arrived
    (an action as a 1 s bump, a blink 0.3 s; a colour for its duration).

    The warps are rendered before the stream starts, for every action the protocol can ask and
    ``PHASES`` points of its bump (the kit knows the vocabulary, not the sequence), so during
    the stream a frame is a look-up, a colour and noise. Why: warping per frame in Python falls
    behind real time on a loaded 2-core machine, and the server then rejects the stream for its
    jitter, which measures our CPU, not the protocol. With the library the only lateness the
    server sees is ``processing_ms``: a fast renderer (a GPU deepfake) with that delay."""

    def __init__(self, photo: PhotoFace, processing_ms: float, seed: int) -> None:
        self.photo, self.mesh, self.delay = photo.rgb, photo.mesh, float(processing_ms)
        self.anchors = anchor_points(self.mesh, self.photo.shape[:2])
        self.source = np.vstack([self.mesh[:, :2], self.anchors])
        self.triangles = triangulate(self.source)
        rng = np.random.default_rng(seed)
        shape = self.photo.shape
        self.noise = [rng.normal(0, NOISE_SIGMA, shape).astype(np.float32) for _ in range(8)]
        self.duration_ms = 25_000.0  # the stream ends when the server says every step is covered
        self._triangles = triangulate(self.mesh)  # the face mesh's, for the shading
        self._frames = 0
        rest = self._render(0.0, 0.0, 0.0, 0.0)
        self.library: dict[tuple[str, int], Pose] = {}
        for action in ACTIONS:
            for k in range(PHASES + 1):
                u = math.sin(math.pi * k / PHASES) ** 2
                yaw, pitch = (u * v for v in HEAD_POSE.get(action, (0.0, 0.0)))
                eyes = u if action == "blink" else 0.0
                mouth = u if action == "open_mouth" else 0.0
                moved = any((yaw, pitch, eyes, mouth))
                self.library[action, k] = self._render(yaw, pitch, eyes, mouth) if moved else rest
        self.rest = rest

    def _render(self, yaw: float, pitch: float, eyes: float, mouth: float) -> Pose:
        mesh, rgb = self.mesh, self.photo
        if any((yaw, pitch, eyes, mouth)):
            mesh = posed_mesh(self.mesh, POSE_GAIN * yaw, POSE_GAIN * pitch, eyes, mouth)
            depth = np.concatenate([mesh[:, 2], np.full(len(self.anchors), mesh[:, 2].max() + 1)])
            rgb = piecewise_affine(
                self.photo,
                self.source,
                np.vstack([mesh[:, :2], self.anchors]),
                self.triangles,
                depth,
            )
        return Pose(rgb, face_shading(rgb.shape[:2], mesh, self._triangles))

    def pose_at(self, t_ms: float, revealed: Revealed) -> Pose:
        """What the renderer shows at ``t_ms`` (already late): the latest revealed action's bump
        while it lasts, else the photo at rest."""
        pose = self.rest
        for step, at in revealed.steps:
            if step["kind"] != "action" or t_ms < at:
                continue
            length = BLINK_MS if step["action"] == "blink" else ACTION_MS
            if t_ms < at + length:
                k = round(PHASES * (t_ms - at) / length)
                pose = self.library.get((str(step["action"]), k), self.rest)
        return pose

    def frame(self, t_ms: float, revealed: Revealed) -> np.ndarray:
        """The frame captured at ``t_ms``: what the renderer had ready ``delay`` ms earlier."""
        t = t_ms - self.delay
        pose = self.pose_at(t, revealed)
        rgb = pose.rgb
        shown = revealed.active(t, "colour")
        if shown is not None:
            light = np.array(hex_rgb(str(shown[0]["colour"])), np.float32)
            rgb = add_light(rgb, light, pose.shading, REFLECTION, 0.05)
        self._frames += 1
        noisy = rgb.astype(np.float32) + self.noise[self._frames % len(self.noise)]
        return np.clip(noisy, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Pose:
    """One rendered pose of the photo and its face shading (for the colour's reflection)."""

    rgb: np.ndarray
    shading: np.ndarray
