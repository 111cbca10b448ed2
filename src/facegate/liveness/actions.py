"""Action events in a series of frame signals (pure functions over arrays of times and values).

Directions are named from the user's side, for an unmirrored capture (what a camera records):
``turn_left`` moves the nose toward image-right, which our yaw reads as positive;
``look_down`` moves the nose toward the image bottom, which our pitch reads as positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACTIONS = ("blink", "turn_left", "turn_right", "look_up", "look_down", "open_mouth")


@dataclass(frozen=True)
class ActionPolicy:
    """Thresholds, all relative to the person's own baseline in this video."""

    baseline_ms: float = 1000.0  # the first frames define neutral pose and mouth
    blink_ratio: float = 0.65  # closed when EAR < ratio x the local open level
    blink_window_ms: float = 1500.0  # the local open level: median EAR over this window
    blink_min_ms: float = 80.0
    blink_max_ms: float = 700.0  # 600 ms plus one frame of sampling at 15 fps
    turn_deg: float = 20.0  # yaw change from baseline
    look_deg: float = 15.0  # pitch change from baseline
    mouth_delta: float = 0.25  # inner-lip gap / mouth width, above baseline
    return_fraction: float = 0.5  # "and back": within this fraction of the threshold


DEFAULT_ACTION_POLICY = ActionPolicy()


@dataclass(frozen=True)
class ActionEvent:
    action: str
    start_ms: float
    end_ms: float
    peak: float  # the extreme value reached (degrees, ratio)

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "start_s": round(self.start_ms / 1000, 3),
            "end_s": round(self.end_ms / 1000, 3),
            "peak": round(self.peak, 3),
        }


def median3(values: np.ndarray) -> np.ndarray:
    """Three-tap median filter (edges kept): removes single-frame landmark glitches."""
    if len(values) < 3:
        return values.copy()
    stacked = np.stack([values[:-2], values[1:-1], values[2:]])
    out = values.copy()
    out[1:-1] = np.median(stacked, axis=0)
    return out


def baseline(t_ms: np.ndarray, values: np.ndarray, span_ms: float) -> float:
    early = values[t_ms <= t_ms[0] + span_ms]
    return float(np.median(early if len(early) else values))


def blinks(t_ms: np.ndarray, ear: np.ndarray, policy: ActionPolicy) -> list[ActionEvent]:
    """Open -> closed -> open dips of the eye aspect ratio, each 80-600 ms long. Eyes that were
    not measured (NaN) show no blink."""
    events: list[ActionEvent] = []
    if not np.all(np.isfinite(ear)):
        return events
    half = policy.blink_window_ms / 2
    level = np.array([np.median(ear[np.abs(t_ms - t) <= half]) for t in t_ms])
    closed = ear < policy.blink_ratio * level
    i, n = 0, len(ear)
    while i < n:
        if not closed[i]:
            i += 1
            continue
        j = i
        while j < n and closed[j]:
            j += 1
        if i > 0 and j < n:  # open before and after
            span = t_ms[j] - t_ms[i - 1]  # last open frame to first open frame again
            if policy.blink_min_ms <= span <= policy.blink_max_ms:
                depth = float(np.min(ear[i:j] / level[i:j]))
                events.append(ActionEvent("blink", float(t_ms[i]), float(t_ms[j]), depth))
        i = j
    return events


def excursions(
    t_ms: np.ndarray,
    delta: np.ndarray,
    threshold: float,
    back: float,
    action: str,
    dominant: np.ndarray | None = None,
) -> list[ActionEvent]:
    """Runs where ``delta`` rises past ``threshold`` and later falls back below ``back``.

    ``dominant`` (bool per frame), when given, must hold at the run's peak: a pitch change
    that rides along a large turn is not a nod, and the other way round.
    """
    events: list[ActionEvent] = []
    i, n = 0, len(delta)
    while i < n:
        if delta[i] <= threshold:
            i += 1
            continue
        j = i
        while j < n and delta[j] > back:
            j += 1
        peak = i + int(np.argmax(delta[i:j]))
        if i > 0 and j < n and (dominant is None or dominant[peak]):  # from neutral, and back
            events.append(ActionEvent(action, float(t_ms[i]), float(t_ms[j]), float(delta[peak])))
        i = j + 1
    return events


def find_events(
    t_ms: np.ndarray,
    ear: np.ndarray,
    yaw: np.ndarray,
    pitch: np.ndarray,
    mouth: np.ndarray,
    policy: ActionPolicy = DEFAULT_ACTION_POLICY,
) -> list[ActionEvent]:
    """Every action event in the series, sorted by start time."""
    if len(t_ms) < 3:
        return []
    yaw_s, pitch_s, mouth_s = median3(yaw), median3(pitch), median3(mouth)
    dyaw = yaw_s - baseline(t_ms, yaw_s, policy.baseline_ms)
    dpitch = pitch_s - baseline(t_ms, pitch_s, policy.baseline_ms)
    dmouth = mouth_s - baseline(t_ms, mouth_s, policy.baseline_ms)
    r = policy.return_fraction
    # which axis dominates each frame, each measured in units of its own threshold
    yaw_dominant = np.abs(dyaw) / policy.turn_deg >= np.abs(dpitch) / policy.look_deg
    pitch_dominant = ~yaw_dominant
    t_, l_ = policy.turn_deg, policy.look_deg
    events = blinks(t_ms, ear, policy)
    events += excursions(t_ms, dyaw, t_, r * t_, "turn_left", yaw_dominant)
    events += excursions(t_ms, -dyaw, t_, r * t_, "turn_right", yaw_dominant)
    events += excursions(t_ms, dpitch, l_, r * l_, "look_down", pitch_dominant)
    events += excursions(t_ms, -dpitch, l_, r * l_, "look_up", pitch_dominant)
    events += excursions(t_ms, dmouth, policy.mouth_delta, r * policy.mouth_delta, "open_mouth")
    return sorted(events, key=lambda e: e.start_ms)


def match_in_order(
    challenged: tuple[str, ...], events: list[ActionEvent], slack_ms: float = 100.0
) -> list[ActionEvent | None]:
    """For each challenged action, the first matching event that starts after the previous match.

    Greedy earliest matching is optimal for a subsequence test. Unrequested events (spontaneous
    blinks) are ignored; a missing or out-of-order action leaves None.
    """
    matched: list[ActionEvent | None] = []
    after = -np.inf
    for action in challenged:
        hit = next((e for e in events if e.action == action and e.start_ms >= after), None)
        matched.append(hit)
        # after a miss, nothing more can match: the order is broken
        after = np.inf if hit is None else hit.end_ms - slack_ms
    return matched
