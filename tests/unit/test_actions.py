"""Action events from synthetic signal series with known answers."""

from __future__ import annotations

import numpy as np

from facegate.liveness.actions import DEFAULT_ACTION_POLICY as P
from facegate.liveness.actions import ActionEvent, blinks, find_events, match_in_order

FPS = 15.0


def series(seconds: float) -> np.ndarray:
    return np.arange(0, seconds * 1000, 1000 / FPS)


def flat(t: np.ndarray, value: float) -> np.ndarray:
    return np.full(len(t), value, dtype=np.float64)


def test_blink_is_a_short_dip() -> None:
    t = series(4)
    ear = flat(t, 0.30)
    ear[(t >= 1000) & (t < 1150)] = 0.08  # ~150 ms closed
    found = blinks(t, ear, P)
    assert len(found) == 1 and abs(found[0].start_ms - 1000) < 70


def test_unmeasured_eyes_show_no_blink() -> None:
    """Eyes are not measured when no blink is challenged; missing evidence is no blink."""
    t = series(4)
    ear = flat(t, 0.30)
    ear[(t >= 1000) & (t < 1150)] = 0.08
    ear[5] = np.nan
    assert blinks(t, ear, P) == []
    assert blinks(t, flat(t, np.nan), P) == []


def test_long_closure_is_not_a_blink() -> None:
    t = series(5)
    ear = flat(t, 0.30)
    ear[(t >= 1000) & (t < 2000)] = 0.08  # eyes closed for a second
    assert blinks(t, ear, P) == []


def test_closure_at_the_very_start_or_end_is_not_a_blink() -> None:
    t = series(3)
    ear = flat(t, 0.30)
    ear[:2] = 0.05
    ear[-2:] = 0.05
    assert blinks(t, ear, P) == []


def _turn(t: np.ndarray, start: float, end: float, degrees: float) -> np.ndarray:
    yaw = flat(t, 2.0)
    yaw[(t >= start) & (t < end)] = 2.0 + degrees
    return yaw


def test_turn_and_back_in_both_directions() -> None:
    t = series(6)
    yaw = _turn(t, 1500, 2500, 35) + _turn(t, 3500, 4500, -35) - 2.0
    ev = find_events(t, flat(t, 0.3), yaw, flat(t, 8.0), flat(t, 0.05))
    assert [e.action for e in ev] == ["turn_left", "turn_right"]


def test_turn_that_never_comes_back_is_not_an_event() -> None:
    t = series(4)
    yaw = flat(t, 0.0)
    yaw[t >= 2000] = 40.0
    ev = find_events(t, flat(t, 0.3), yaw, flat(t, 0.0), flat(t, 0.05))
    assert ev == []


def test_small_turn_is_not_an_event() -> None:
    t = series(4)
    ev = find_events(t, flat(t, 0.3), _turn(t, 1500, 2500, 12), flat(t, 0.0), flat(t, 0.05))
    assert ev == []


def test_pitch_riding_on_a_turn_is_not_a_nod() -> None:
    t = series(5)
    yaw = _turn(t, 1500, 3000, 45)
    pitch = flat(t, 10.0)
    pitch[(t >= 1500) & (t < 3000)] = -8.0  # 18 degrees of pitch while turned 45
    ev = find_events(t, flat(t, 0.3), yaw, pitch, flat(t, 0.05))
    assert [e.action for e in ev] == ["turn_left"]


def test_nods_and_mouth() -> None:
    t = series(7)
    pitch = flat(t, 10.0)
    pitch[(t >= 1500) & (t < 2300)] = 35.0  # down
    pitch[(t >= 3500) & (t < 4300)] = -12.0  # up
    mouth = flat(t, 0.05)
    mouth[(t >= 5000) & (t < 5800)] = 0.5
    ev = find_events(t, flat(t, 0.3), flat(t, 0.0), pitch, mouth)
    assert [e.action for e in ev] == ["look_down", "look_up", "open_mouth"]


def _ev(action: str, start: float) -> ActionEvent:
    return ActionEvent(action, start, start + 300, 1.0)


def test_match_in_order() -> None:
    events = [_ev("blink", 0), _ev("turn_left", 1000), _ev("blink", 2000)]
    assert all(match_in_order(("blink", "turn_left"), events))
    assert all(match_in_order(("turn_left", "blink"), events))
    got = match_in_order(("turn_left", "turn_left"), events)
    assert got[0] is not None and got[1] is None
    assert match_in_order(("turn_right", "blink"), events) == [None, None]
