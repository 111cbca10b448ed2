"""The streamed session's clock and timed cues (pure): steps revealed only once covered, every
way a stream can be late, bursty, paused or reordered fails closed with its own code, and a
colour's reflection counts only within the bound after its reveal."""

from __future__ import annotations

from random import Random

import numpy as np

from facegate.liveness.actions import ActionEvent
from facegate.liveness.flash import ColourSample, hex_rgb
from facegate.liveness.stream import (
    Step,
    StreamClock,
    StreamPolicy,
    action_window_reasons,
    judge_stream_flash,
    plan_steps,
)

STEPS = [Step("settle", None, 1000), Step("colour", "#ff0000", 400), Step("action", "blink", 1500)]


def run(clock: StreamClock, frames: list[tuple[float, float]]) -> list[tuple[int, float]]:
    """Feed (client ms, arrival ms) frames; the reveals as (step index, server ms)."""
    out = []
    for client, arrival in frames:
        step = clock.frame(client, arrival, 10_000)
        if step is not None:
            out.append((step, arrival))
    return out


def steady(n: int, offset: float, delay: float = 0.0, start: float = 0.0) -> list:
    return [(start + k * 66.7, start + k * 66.7 + offset + delay) for k in range(n)]


def test_plan_interleaves_both_kinds_in_order_after_a_settle_step() -> None:
    colours = (("#ff0000", 300), ("#00ff00", 400), ("#0000ff", 500), ("#ffffff", 350))
    steps = plan_steps(("blink", "turn_left"), colours, Random(3))
    assert steps[0].kind == "settle"
    assert [s.value for s in steps if s.kind == "action"] == ["blink", "turn_left"]
    assert [(s.value, s.duration_ms) for s in steps if s.kind == "colour"] == list(colours)
    plans = {tuple(s.kind for s in plan_steps(("blink",), colours, Random(i))) for i in range(30)}
    assert len(plans) > 1  # where the action comes is random


def test_next_step_only_after_frames_covering_the_previous_one() -> None:
    clock = StreamClock(list(STEPS))
    clock.start(0.0)
    reveals = run(clock, steady(60, offset=5000.0))  # another clock: the offset is learnt
    assert [i for i, _ in reveals] == [1, 2]
    assert reveals[0][1] >= 1000  # not before the settle step's frames arrived
    assert reveals[1][1] >= reveals[0][1] + 400
    assert clock.done and clock.failure is None
    clock.end()
    assert clock.failure is None


def test_constant_delay_is_not_jitter_but_bursts_and_stalls_are() -> None:
    clock = StreamClock(list(STEPS))
    clock.start(0.0)
    run(clock, steady(40, offset=0.0, delay=900.0))
    assert clock.failure is None
    clock = StreamClock(list(STEPS))
    clock.start(0.0)
    frames = steady(10, 0.0) + [(700.0 + 66.7 * k, 1300.0 + k) for k in range(5)]
    run(clock, frames)
    assert clock.failure is not None and clock.failure.code == "stream_jitter"


def test_reordered_paused_and_bursty_streams_fail_with_their_own_codes() -> None:
    cases = {
        "stream_reordered": [(0.0, 1.0), (66.0, 67.0), (50.0, 140.0)],
        "stream_paused": [(0.0, 1.0), (66.0, 67.0), (1000.0, 1001.0)],
        "stream_bursty": [(0.0, 1.0), (10.0, 11.0)],
    }
    for code, frames in cases.items():
        clock = StreamClock(list(STEPS))
        clock.start(0.0)
        run(clock, frames)
        assert clock.failure is not None and clock.failure.code == code, code


def test_limits_silence_and_an_early_end() -> None:
    policy = StreamPolicy(max_frame_bytes=100)
    clock = StreamClock(list(STEPS), policy)
    clock.start(0.0)
    clock.frame(0.0, 1.0, 101)
    assert clock.failure is not None and clock.failure.code == "frame_too_large"
    clock = StreamClock(list(STEPS))
    clock.start(0.0)
    run(clock, steady(5, 0.0))
    clock.tick(5000.0)
    assert clock.failure is not None and clock.failure.code == "stream_silent"
    clock = StreamClock(list(STEPS))
    clock.start(0.0)
    clock.tick(6000.0)
    assert clock.failure is not None and clock.failure.code == "stream_silent"
    clock = StreamClock(list(STEPS))
    clock.start(0.0)
    run(clock, steady(5, 0.0))
    clock.end()
    assert clock.failure is not None and clock.failure.code == "stream_incomplete"


def test_a_step_whose_frames_never_come_is_late() -> None:
    clock = StreamClock(list(STEPS), StreamPolicy(idle_timeout_ms=10_000))
    clock.start(0.0)
    run(clock, steady(3, 0.0))
    clock.tick(1000 + 700 + 400 + 10)
    assert clock.failure is not None and clock.failure.code == "stream_late"


def samples_lit(windows, lag_ms: float, gain: float = 0.1) -> list[ColourSample]:
    """A face lit by each colour ``lag_ms`` after its reveal; the background barely."""
    rng = np.random.default_rng(0)
    out = []
    for t in np.arange(0.0, 6000.0, 66.7):
        light = np.zeros(3)
        for colour, start, ms in windows:
            if start + lag_ms <= t < start + lag_ms + ms:
                light = np.array(hex_rgb(colour))
        face = 120 * (1 + gain * light) + rng.normal(0, 0.3, 3)
        back = 90 * (1 + 0.005 * light) + rng.normal(0, 0.3, 3)
        out.append(ColourSample(float(t), tuple(face), tuple(back)))  # type: ignore[arg-type]
    return out


WINDOWS = [
    ("#ff0000", 1000.0, 400.0),
    ("#00ff00", 1450.0, 350.0),
    ("#0000ff", 3500.0, 450.0),
    ("#ffff00", 4000.0, 400.0),
    ("#ff00ff", 4450.0, 300.0),
]


def test_reflection_within_the_bound_passes_and_a_late_one_fails() -> None:
    on_time = judge_stream_flash(WINDOWS, samples_lit(WINDOWS, 80.0), 700.0)
    assert all(c.passed for c in on_time), on_time
    late = judge_stream_flash(WINDOWS, samples_lit(WINDOWS, 1200.0), 700.0)
    assert not all(c.passed for c in late)
    none = judge_stream_flash(WINDOWS, samples_lit(WINDOWS, 0.0, gain=0.0), 700.0)
    assert not any(c.passed for c in none if c.name != "flash_lag_ms")


def test_actions_must_fall_in_their_own_step() -> None:
    timeline = [(Step("settle", None, 1000), 0.0), (Step("action", "blink", 1500), 1200.0)]
    inside = [ActionEvent("blink", 1700.0, 1900.0, 0.1)]
    early = [ActionEvent("blink", 500.0, 700.0, 0.1)]
    late = [ActionEvent("blink", 3600.0, 3800.0, 0.1)]
    assert action_window_reasons(timeline, inside, 700.0) == []
    for events in (early, late, []):
        reasons = action_window_reasons(timeline, events, 700.0)
        assert [r.code for r in reasons] == ["action_out_of_step"]
