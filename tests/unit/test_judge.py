"""The judge's continuity and identity rules on synthetic frame signals."""

from __future__ import annotations

import numpy as np

from facegate.liveness.judge import IdentityPolicy, continuity_reasons, identity_reasons, judge
from facegate.liveness.signals import FrameSignals

P = IdentityPolicy()


def frame(t: float, *, face: bool = True, yaw: float = 0.0, x: float = 100.0, faces=None):
    if not face:
        return FrameSignals(t_ms=t, face=False, faces_counted=faces)
    return FrameSignals(
        t_ms=t,
        face=True,
        faces_counted=faces,
        box_xyxy=(x, 100.0, x + 100.0, 200.0),
        ear=0.3,
        ear_left=0.3,
        ear_right=0.3,
        yaw_deg=yaw,
        pitch_deg=5.0,
        roll_deg=0.0,
        mouth=0.05,
    )


def codes(reasons) -> set[str]:
    return {r.code for r in reasons}


def test_steady_face_is_continuous() -> None:
    assert continuity_reasons([frame(i * 67) for i in range(60)], P, 0.0) == []


def test_gap_at_frontal_pose_is_face_missing() -> None:
    sig = [frame(i * 67, face=not 20 <= i < 26) for i in range(60)]
    assert "face_missing" in codes(continuity_reasons(sig, P, 0.0))


def test_lone_dropped_frame_is_tolerated() -> None:
    sig = [frame(i * 67, face=i != 20) for i in range(60)]
    assert continuity_reasons(sig, P, 0.0) == []


def test_gap_while_in_full_profile_is_tolerated_but_not_forever() -> None:
    def yaw(i: int) -> float:
        return 45.0 if 15 <= i < 35 else 0.0

    short = [frame(i * 67, face=not 20 <= i < 30, yaw=yaw(i)) for i in range(60)]
    assert continuity_reasons(short, P, 0.0) == []
    long = [
        frame(i * 67, face=not 5 <= i < 50, yaw=45.0 if 3 <= i < 52 else 0.0) for i in range(60)
    ]
    assert "face_missing" in codes(continuity_reasons(long, P, 0.0))


def test_second_face_and_jumps() -> None:
    sig = [frame(i * 67, faces=2 if i in (10, 15) else None) for i in range(30)]
    assert "multiple_faces" in codes(continuity_reasons(sig, P, 0.0))
    lone = [frame(i * 67, faces=2 if i == 10 else None) for i in range(30)]  # one false count
    assert "multiple_faces" not in codes(continuity_reasons(lone, P, 0.0))
    sig = [frame(i * 67, x=100.0 if i < 15 else 300.0) for i in range(30)]  # a cut
    assert "discontinuity" in codes(continuity_reasons(sig, P, 0.0))


def test_identity() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=192)
    a /= np.linalg.norm(a)
    same = [a + 0.05 * rng.normal(size=192) for _ in range(5)]
    same = [v / np.linalg.norm(v) for v in same]
    assert identity_reasons(same, 0.35)[0] == []
    b = rng.normal(size=192)
    b /= np.linalg.norm(b)
    assert "identity_changed" in codes(identity_reasons([*same[:3], b], 0.35)[0])
    assert "identity_unverified" in codes(identity_reasons(same[:1], 0.35)[0])


def test_fail_closed_without_embeddings() -> None:
    sig = [frame(i * 67) for i in range(60)]
    verdict = judge(("blink",), sig, embed=lambda idx: [None] * len(idx), identity_threshold=0.35)
    assert not verdict.live
    assert {"action_missing", "identity_unverified"} <= codes(verdict.reasons)
