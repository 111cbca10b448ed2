"""The liveness judge: challenge + frame signals -> live or not, with every reason.

Fail closed: anything missing, unclear or inconsistent is a reason, and any reason means
"not live". Attack-defence cues (colour flash, planarity) come in as ``CueResult`` values, each
a score with its threshold; a failed cue is a reason, and every cue shows up in the verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facegate.liveness.actions import (
    DEFAULT_ACTION_POLICY,
    ActionEvent,
    ActionPolicy,
    find_events,
    match_in_order,
)
from facegate.liveness.signals import FrameSignals


@dataclass(frozen=True)
class Reason:
    code: str
    message: str
    value: float | None = None
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.value is not None:
            out["value"] = round(self.value, 4)
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return out


@dataclass(frozen=True)
class CueResult:
    name: str
    score: float
    threshold: float
    passed: bool
    detail: str = ""

    def __post_init__(self) -> None:  # plain Python numbers, whatever numpy handed in
        object.__setattr__(self, "score", float(self.score))
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "passed", bool(self.passed))


@dataclass(frozen=True)
class IdentityPolicy:
    samples: int = 5  # frames embedded across the video
    max_sample_abs_yaw_deg: float = 25.0  # sample near-frontal frames only
    # Frames without a face fail the video, except a gap that a turn to full profile explains
    # (frontal-face models cannot see a profile): entered and left at a large yaw, and short.
    max_profile_gap_ms: float = 2000.0
    max_blip_ms: float = 150.0  # a lone dropped frame (motion blur); the jump check spans it
    profile_gap_min_yaw_deg: float = 25.0
    max_missing_fraction: float = 0.25
    max_jump_fraction: float = 0.5  # face-centre move between analysed frames, in face widths
    max_scale_jump: float = 0.35  # relative face-size change between analysed frames
    # a second face must be counted on at least this many of the (every 5th) counted frames: a
    # lone false detection (hair when looking down) is not a person
    min_multiple_face_counts: int = 2


@dataclass
class Verdict:
    live: bool
    reasons: list[Reason]
    events: list[ActionEvent]
    matched: list[tuple[str, ActionEvent | None]]
    frames_analysed: int
    frames_with_face: int
    identity: dict[str, Any] = field(default_factory=dict)
    cues: list[CueResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "live": self.live,
            "reasons": [r.to_dict() for r in self.reasons],
            "actions": [
                {
                    "action": a,
                    "found": e is not None,
                    **({"at_s": round(e.start_ms / 1000, 3)} if e else {}),
                }
                for a, e in self.matched
            ],
            "events": [e.to_dict() for e in self.events],
            "frames_analysed": self.frames_analysed,
            "frames_with_face": self.frames_with_face,
            "identity": self.identity,
            "cues": [c.__dict__ for c in self.cues],
        }


def face_gaps(signals: Sequence[FrameSignals]) -> list[tuple[int, int]]:
    """Runs [i, j) of analysed frames without a face."""
    gaps, i, n = [], 0, len(signals)
    while i < n:
        if signals[i].face:
            i += 1
            continue
        j = i
        while j < n and not signals[j].face:
            j += 1
        gaps.append((i, j))
        i = j
    return gaps


def is_explained_gap(
    signals: Sequence[FrameSignals], gap: tuple[int, int], yaw0: float, policy: IdentityPolicy
) -> bool:
    i, j = gap
    if i == 0 or j >= len(signals):
        return False  # the face must be seen before and after
    before, after = signals[i - 1], signals[j]
    duration = after.t_ms - before.t_ms
    if duration <= policy.max_blip_ms + (after.t_ms - signals[j - 1].t_ms):
        return True  # a lone dropped frame
    turned = [
        s.yaw_deg is not None and abs(s.yaw_deg - yaw0) >= policy.profile_gap_min_yaw_deg
        for s in (before, after)
    ]
    return duration <= policy.max_profile_gap_ms and all(turned)


def continuity_reasons(
    signals: Sequence[FrameSignals], policy: IdentityPolicy, yaw0: float
) -> list[Reason]:
    """One face in every analysed frame (profile gaps aside), no jump that only a cut explains."""
    reasons: list[Reason] = []
    n = len(signals)
    gaps = face_gaps(signals)
    missing = sum(j - i for i, j in gaps)
    unexplained = [g for g in gaps if not is_explained_gap(signals, g, yaw0, policy)]
    if unexplained or (n and missing / n > policy.max_missing_fraction):
        reasons.append(
            Reason(
                "face_missing",
                "the face was not visible in every frame",
                missing / max(n, 1),
                policy.max_missing_fraction,
            )
        )
    counts = [s.faces_counted or 0 for s in signals]
    several = max(counts) if counts else 0
    if sum(c > 1 for c in counts) >= policy.min_multiple_face_counts:
        reasons.append(
            Reason("multiple_faces", "more than one face was in the picture", several, 1)
        )
    jumps, scale = 0.0, 0.0
    prev = None
    for s in signals:
        if not s.face or s.box_xyxy is None:
            continue  # the jump is measured across short gaps too
        if prev is not None and prev.box_xyxy is not None and s.t_ms - prev.t_ms <= 250:
            (a0, b0, a1, b1), (c0, d0, c1, d1) = prev.box_xyxy, s.box_xyxy
            w_prev, w_now = a1 - a0, c1 - c0
            move = np.hypot((c0 + c1 - a0 - a1) / 2, (d0 + d1 - b0 - b1) / 2) / max(w_prev, 1.0)
            jumps = max(jumps, float(move))
            scale = max(scale, abs(w_now - w_prev) / max(w_prev, 1.0))
        prev = s
    if jumps > policy.max_jump_fraction or scale > policy.max_scale_jump:
        reasons.append(
            Reason(
                "discontinuity",
                "the face jumped between frames (a cut or a swap)",
                max(jumps, scale),
                policy.max_jump_fraction,
            )
        )
    return reasons


def sample_indices(signals: Sequence[FrameSignals], policy: IdentityPolicy) -> list[int]:
    """Near-frontal frames spread evenly over the video, plus the nearest ones on both sides of
    every gap, so that a swap hidden in a gap meets a comparison."""
    usable = [
        i
        for i, s in enumerate(signals)
        if s.face and s.yaw_deg is not None and abs(s.yaw_deg) <= policy.max_sample_abs_yaw_deg
    ]
    if len(usable) <= policy.samples:
        return usable
    picks = {usable[k] for k in np.linspace(0, len(usable) - 1, policy.samples).round().astype(int)}
    for i, j in face_gaps(signals):
        before = [u for u in usable if u < i]
        after = [u for u in usable if u >= j]
        if before:
            picks.add(before[-1])
        if after:
            picks.add(after[0])
    return sorted(picks)


def identity_reasons(
    vectors: list[np.ndarray], threshold: float
) -> tuple[list[Reason], dict[str, Any]]:
    """The sampled frames must all be one person: every pair scores above ``threshold``."""
    if len(vectors) < 2:
        return (
            [
                Reason(
                    "identity_unverified",
                    "too few clear frames to confirm one person throughout",
                    len(vectors),
                    2,
                )
            ],
            {"samples": len(vectors)},
        )
    v = np.stack(vectors)
    sims = v @ v.T
    lowest = float(sims[np.triu_indices(len(v), 1)].min())
    info = {
        "samples": len(v),
        "lowest_similarity": round(lowest, 4),
        "threshold": round(threshold, 4),
    }
    if lowest < threshold:
        return [
            Reason("identity_changed", "the person changed during the video", lowest, threshold)
        ], info
    return [], info


def judge(
    challenged: tuple[str, ...],
    signals: Sequence[FrameSignals],
    *,
    embed: Callable[[list[int]], list[np.ndarray | None]],
    identity_threshold: float,
    action_policy: ActionPolicy = DEFAULT_ACTION_POLICY,
    identity_policy: IdentityPolicy = IdentityPolicy(),
    cues: Sequence[CueResult] = (),
) -> Verdict:
    """Decide. ``embed(indices)`` returns the unit embeddings of those analysed frames (None
    where a frame has none); one call, so an embedder can batch them."""
    reasons: list[Reason] = []
    with_face = [s for s in signals if s.face]
    if not with_face:
        reasons.append(Reason("no_face", "no face was found in the video"))
        return Verdict(False, reasons, [], [(a, None) for a in challenged], len(signals), 0)
    t = np.array([s.t_ms for s in with_face])
    series = {
        k: np.array([getattr(s, k) for s in with_face], dtype=np.float64)
        for k in ("ear", "yaw_deg", "pitch_deg", "mouth")
    }
    events = find_events(
        t, series["ear"], series["yaw_deg"], series["pitch_deg"], series["mouth"], action_policy
    )
    matched = match_in_order(challenged, events)
    for action, hit in zip(challenged, matched):
        if hit is None:
            reasons.append(
                Reason("action_missing", f"'{action}' was not seen in the challenged order")
            )
    yaw0 = float(np.median(series["yaw_deg"][t <= t[0] + action_policy.baseline_ms]))
    reasons += continuity_reasons(signals, identity_policy, yaw0)
    vectors = [v for v in embed(sample_indices(signals, identity_policy)) if v is not None]
    id_reasons, id_info = identity_reasons(vectors, identity_threshold)
    reasons += id_reasons
    for cue in cues:
        if not cue.passed:
            reasons.append(
                Reason(f"cue_{cue.name}", cue.detail or cue.name, cue.score, cue.threshold)
            )
    return Verdict(
        live=not reasons,
        reasons=reasons,
        events=events,
        matched=list(zip(challenged, matched)),
        frames_analysed=len(signals),
        frames_with_face=len(with_face),
        identity=id_info,
        cues=list(cues),
    )
