"""A streamed liveness session: the challenge revealed one step at a time, timed by the server.

Why: when the whole challenge is known up front and a finished video is uploaded, any offline
renderer (the emulator kits) has a minute to produce the answer. Here the client learns a step
only after frames covering the previous step have *arrived*, and every frame's arrival on the
server's clock must agree with the client's own capture timestamp within a jitter bound. So the
answer to a step cannot be prepared before the step is revealed, and cannot be produced slowly
and passed off as live: a constant delay shifts the colour's reflection past the reflection
bound, a varying one breaks the jitter bound.

Pure: times (milliseconds, server clock for arrivals, client clock for timestamps) and
randomness are inputs; no I/O, no models. ``StreamClock`` checks the stream and decides when to
reveal the next step; ``judge_stream_flash`` and ``action_window_reasons`` are the timed cues
the final verdict adds to the existing judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from random import Random
from typing import Any

import numpy as np

from facegate.liveness.actions import ActionEvent
from facegate.liveness.flash import (
    DEFAULT_FLASH_POLICY,
    FLASH_PALETTE,
    ColourSample,
    FlashPolicy,
    best_lag,
    detrend,
    hex_rgb,
    no_evidence,
)
from facegate.liveness.judge import CueResult, Reason


@dataclass(frozen=True)
class StreamPolicy:
    """Timing bounds and limits of one streamed session (see docs/liveness-protocol.md)."""

    settle_ms: tuple[int, int] = (1000, 1400)  # first step: hold still (the actions' baseline)
    action_ms: tuple[int, int] = (1500, 2200)  # one action, reaction time included
    # A colour's reflection must be seen in frames the server stamps at most this long after it
    # revealed the colour. Bona fide: camera pipeline + paint + down- and uplink (measured on
    # loopback: ~70 ms incl. one frame interval; a phone on a mobile uplink: budget 600 ms).
    max_reflection_lag_ms: float = 700.0
    # arrival - (client timestamp + clock offset) for every frame; the offset is the smallest
    # such difference seen, so a constant delay does not count, bursts and stalls do.
    max_jitter_ms: float = 400.0
    max_gap_ms: float = 700.0  # between two frames (client timestamps or arrivals): a pause
    min_frame_interval_ms: float = 25.0  # more than 40 fps from the client: a burst
    max_fps: float = 20.0  # frames per second over the whole stream (+ a slack of 5 frames)
    max_frame_bytes: int = 200_000
    max_width: int = 640
    max_height: int = 640
    max_total_bytes: int = 20 << 20
    max_duration_ms: float = 30_000.0
    first_frame_timeout_ms: float = 5_000.0
    idle_timeout_ms: float = 3_000.0  # no message at all: a silent client
    flash: FlashPolicy = DEFAULT_FLASH_POLICY


DEFAULT_STREAM_POLICY = StreamPolicy()


@dataclass(frozen=True)
class Step:
    """One revealed step: ``settle`` (look at the camera), a ``colour`` shown full screen, or an
    ``action`` to perform, for ``duration_ms``."""

    kind: str
    value: str | None
    duration_ms: int

    def message(self, index: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "step",
            "index": index,
            "kind": self.kind,
            "duration_ms": self.duration_ms,
        }
        if self.kind != "settle":
            out[self.kind] = self.value
        return out


def plan_steps(
    actions: Sequence[str],
    colours: Sequence[tuple[str, int]],
    rng: Random,
    policy: StreamPolicy = DEFAULT_STREAM_POLICY,
) -> list[Step]:
    """A settle step, then colours and actions interleaved at random (each kind in its own
    order), with random lengths: no step's time or content can be known before it comes."""
    kinds = ["action"] * len(actions) + ["colour"] * len(colours)
    rng.shuffle(kinds)
    steps = [Step("settle", None, rng.randint(*policy.settle_ms))]
    a, c = iter(actions), iter(colours)
    for kind in kinds:
        if kind == "action":
            steps.append(Step("action", next(a), rng.randint(*policy.action_ms)))
        else:
            colour, ms = next(c)
            steps.append(Step("colour", colour, ms))
    return steps


@dataclass
class StreamClock:
    """The server's view of the stream: checks each frame's timing, reveals steps.

    ``start(now)`` reveals the first step; ``frame(client_ms, arrival_ms, nbytes)`` returns the
    index of a step to reveal now (or None); ``tick(now)`` checks deadlines while no frame
    comes. The first failure ends the session: ``failure`` holds its reason."""

    steps: list[Step]
    policy: StreamPolicy = DEFAULT_STREAM_POLICY
    revealed_at: list[float] = field(default_factory=list)  # server ms per revealed step
    client_ms: list[float] = field(default_factory=list)
    arrival_ms: list[float] = field(default_factory=list)
    offset_ms: float = float("inf")  # min(arrival - client timestamp)
    total_bytes: int = 0
    covered: int = 0  # steps whose frames have all arrived
    failure: Reason | None = None
    last_message_ms: float = 0.0
    max_lag_seen_ms: float = 0.0

    def start(self, now: float) -> int:
        self.revealed_at.append(now)
        self.last_message_ms = now
        return 0

    @property
    def done(self) -> bool:
        return self.covered >= len(self.steps)

    def fail(
        self, code: str, message: str, value: float | None = None, bound: float | None = None
    ) -> None:
        if self.failure is None:
            self.failure = Reason(code, message, value, bound)

    def heard(self, now: float) -> None:
        """Any message from the client (frames and control messages) resets the idle timer."""
        self.last_message_ms = now

    def frame(self, client_ms: float, arrival_ms: float, nbytes: int) -> int | None:
        p = self.policy
        self.heard(arrival_ms)
        if self.failure is not None:
            return None
        if not np.isfinite(client_ms):
            self.fail("frame_malformed", "a frame carried no valid timestamp")
            return None
        self.total_bytes += nbytes
        if nbytes > p.max_frame_bytes:
            self.fail("frame_too_large", "a frame was too large", nbytes, p.max_frame_bytes)
        elif self.total_bytes > p.max_total_bytes:
            self.fail("stream_too_large", "the stream sent too much data")
        if self.client_ms:
            dt, da = client_ms - self.client_ms[-1], arrival_ms - self.arrival_ms[-1]
            if dt <= 0:
                self.fail("stream_reordered", "frames arrived out of order", dt, 0)
            elif dt < p.min_frame_interval_ms:
                self.fail("stream_bursty", "frames came faster than a camera sends them", dt)
            elif dt > p.max_gap_ms or da > p.max_gap_ms:
                self.fail("stream_paused", "the stream paused", max(dt, da), p.max_gap_ms)
        elif arrival_ms - self.revealed_at[0] > p.first_frame_timeout_ms:
            self.fail("stream_late", "the first frame came too late")
        self.client_ms.append(client_ms)
        self.arrival_ms.append(arrival_ms)
        span = arrival_ms - self.arrival_ms[0]
        if span > p.max_duration_ms:
            self.fail("stream_too_long", "the stream went on too long", span, p.max_duration_ms)
        if len(self.client_ms) > p.max_fps * span / 1000 + 5:
            self.fail("stream_bursty", "too many frames per second", len(self.client_ms))
        self.offset_ms = min(self.offset_ms, arrival_ms - client_ms)
        lag = arrival_ms - client_ms - self.offset_ms
        self.max_lag_seen_ms = max(self.max_lag_seen_ms, lag)
        if lag > p.max_jitter_ms:
            self.fail(
                "stream_jitter",
                "frames arrived later than their timestamps say (delayed or bursty)",
                lag,
                p.max_jitter_ms,
            )
        if self.failure is not None or self.done:
            return None
        # the frame's capture time on the server's clock (never after its arrival)
        stamped = client_ms + self.offset_ms
        current = len(self.revealed_at) - 1
        if stamped >= self.revealed_at[current] + self.steps[current].duration_ms:
            self.covered = current + 1
            if not self.done:
                self.revealed_at.append(arrival_ms)
                return current + 1
        return None

    def tick(self, now: float) -> None:
        """Deadlines while waiting: a silent client, a step never covered, a first frame that
        never came."""
        p = self.policy
        if self.failure is not None:
            return
        if now - self.last_message_ms > p.idle_timeout_ms:
            self.fail("stream_silent", "the client stopped sending", now - self.last_message_ms)
        elif not self.client_ms and now - self.revealed_at[0] > p.first_frame_timeout_ms:
            self.fail("stream_late", "the first frame came too late")
        elif not self.done:
            current = len(self.revealed_at) - 1
            deadline = (
                self.revealed_at[current]
                + self.steps[current].duration_ms
                + p.max_reflection_lag_ms
                + p.max_jitter_ms
            )
            if now > deadline:
                self.fail("stream_late", "the frames of a step did not arrive in time")

    def end(self) -> None:
        """The client said it is done: every step must have been covered."""
        if self.failure is None and not self.done:
            self.fail("stream_incomplete", "the stream ended before every step was shown")

    def client_timeline(self) -> list[tuple[Step, float]]:
        """Each revealed step with its reveal time on the client's clock, relative to the first
        frame (the clock the frame analysis uses)."""
        if not self.client_ms:
            return []
        shift = self.offset_ms + self.client_ms[0]
        return [(s, t - shift) for s, t in zip(self.steps, self.revealed_at)]

    def timing(self) -> dict[str, Any]:
        return {
            "frames": len(self.client_ms),
            "bytes": self.total_bytes,
            "steps_covered": self.covered,
            "steps": len(self.steps),
            "max_jitter_ms": round(self.max_lag_seen_ms, 1),
        }


def windows_light(
    windows: Sequence[tuple[str, float, float]], t_ms: np.ndarray, lag_ms: float, edge_ms: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Screen colour per time for colour windows (colour, reveal, duration) shown ``lag_ms``
    after their reveal; a mask of times well inside a window, and each time's window index."""
    light = np.zeros((len(t_ms), 3))
    which = np.full(len(t_ms), -1)
    for k, (colour, start, ms) in enumerate(windows):
        now = (t_ms >= start + lag_ms + edge_ms) & (t_ms < start + lag_ms + ms - edge_ms)
        light[now] = hex_rgb(colour)
        which[now] = k
    return light, which >= 0, which


def judge_stream_flash(
    windows: Sequence[tuple[str, float, float]],
    samples: Sequence[ColourSample],
    max_lag_ms: float,
    policy: FlashPolicy = DEFAULT_FLASH_POLICY,
) -> list[CueResult]:
    """The colour-flash cues (``facegate.liveness.flash``) for colours revealed one at a time:
    the face must follow each colour within ``max_lag_ms`` of its reveal, read back colour by
    colour, and more than the background does. Fails closed on missing evidence."""
    if not windows:
        return no_evidence(policy, "no colour was shown")
    end = max(s + ms for _, s, ms in windows) + max_lag_ms
    shown = [s for s in samples if windows[0][1] <= s.t_ms <= end]
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
        np.arange(0.0, max_lag_ms + 1e-6, policy.lag_step_ms),
        lambda lag: windows_light(windows, t, lag, policy.edge_ms)[:2],
        policy.min_frames_per_step * len(windows),
    )
    if best is None:
        return no_evidence(policy, "too few frames with a face while the colours were shown")
    r, lag, k_face, ratio = best
    steps = 0.0
    if k_face > 0:
        light, inside, which = windows_light(windows, t, lag, policy.edge_ms)
        y, x, idx = detrend(face[inside]), detrend(light[inside]), which[inside]
        palette = {c: np.array(hex_rgb(c)) for c in FLASH_PALETTE}
        hits = 0
        for k, (colour, _, _) in enumerate(windows):
            now = idx == k
            if now.any():
                estimate = y[now].mean(axis=0) / k_face - x[now].mean(axis=0) + palette[colour]
                nearest = min(palette, key=lambda c: float(np.linalg.norm(palette[c] - estimate)))
                hits += nearest == colour
        steps = hits / len(windows)
    follows = r >= policy.min_correlation and k_face >= policy.min_face_response
    checks = (
        ("flash_correlation", max(r, 0.0), policy.min_correlation, follows,
         "the face's colour did not follow the colours as they were revealed"),
        ("flash_steps", steps, policy.min_steps_identified, steps >= policy.min_steps_identified,
         "the colours on the face were not the colours shown"),
        ("flash_face_vs_background", ratio, policy.min_face_vs_background,
         ratio >= policy.min_face_vs_background,
         "the colour changed as much away from the face as on it (a tinted video)"),
    )  # fmt: skip
    return [
        CueResult(name, round(score, 4), bound, passed, "" if passed else failure)
        for name, score, bound, passed, failure in checks
    ] + [CueResult("flash_lag_ms", lag, max_lag_ms, True, "")]


def action_window_reasons(
    timeline: Sequence[tuple[Step, float]],
    events: Sequence[ActionEvent],
    max_lag_ms: float,
) -> list[Reason]:
    """Each challenged action must start after it was revealed and before its step ended (plus
    the reflection bound), in order: an action done early was prepared, one done late was
    produced slowly."""
    reasons: list[Reason] = []
    after = -float("inf")
    for step, revealed in timeline:
        if step.kind != "action":
            continue
        window = (revealed, revealed + step.duration_ms + max_lag_ms)
        hit = next(
            (
                e
                for e in events
                if e.action == step.value
                and e.start_ms >= max(window[0], after)
                and e.start_ms <= window[1]
            ),
            None,
        )
        if hit is None:
            reasons.append(
                Reason("action_out_of_step", f"'{step.value}' was not done while it was asked for")
            )
        else:
            after = hit.end_ms
    return reasons
