"""What an attacker makes a fake face do over time to answer a challenge (pure).

The capture page shows a neutral phase, then one action at a time. ``Timeline`` says, for any
time, how far the head is turned, how closed the eyes are and how open the mouth is, so that a
generated attack performs the challenge on cue, as the emulator kits do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from random import Random

NEUTRAL_MS = 1200.0
ACTION_MS = 1500.0

# degrees of head rotation an action asks for, as (yaw, pitch): yaw > 0 = nose to image-right
HEAD_POSE = {
    "turn_left": (32.0, 0.0),  # the user's left is image-right in an unmirrored capture
    "turn_right": (-32.0, 0.0),
    "look_up": (0.0, -24.0),
    "look_down": (0.0, 24.0),
}


@dataclass(frozen=True)
class Pose:
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    eyes_closed: float = 0.0  # 0 open .. 1 closed
    mouth_open: float = 0.0  # 0 closed .. 1 wide open


@dataclass(frozen=True)
class Timeline:
    actions: tuple[str, ...]
    starts_ms: tuple[float, ...]
    durations_ms: tuple[float, ...]
    total_ms: float

    def pose(self, t_ms: float) -> Pose:
        for action, start, length in zip(self.actions, self.starts_ms, self.durations_ms):
            if start <= t_ms < start + length:
                # a smooth bump 0 -> 1 -> 0 over the action
                u = math.sin(math.pi * (t_ms - start) / length) ** 2
                if action in HEAD_POSE:
                    yaw, pitch = HEAD_POSE[action]
                    return Pose(yaw_deg=u * yaw, pitch_deg=u * pitch)
                if action == "blink":
                    return Pose(eyes_closed=u)
                if action == "open_mouth":
                    return Pose(mouth_open=u)
        return Pose()


def make_timeline(actions: tuple[str, ...], rng: Random) -> Timeline:
    """Each action inside its prompt window, with a little human jitter."""
    starts, lengths = [], []
    for k, action in enumerate(actions):
        window = NEUTRAL_MS + k * ACTION_MS
        length = rng.uniform(250, 400) if action == "blink" else rng.uniform(800, 1200)
        starts.append(window + rng.uniform(100, ACTION_MS - length - 50))
        lengths.append(length)
    return Timeline(
        tuple(actions), tuple(starts), tuple(lengths), NEUTRAL_MS + ACTION_MS * len(actions) + 300
    )
