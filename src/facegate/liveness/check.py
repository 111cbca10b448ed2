"""LivenessChecker: video bytes + challenge -> Verdict, reusing the face engine's loaded models."""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facegate.engine.compare import operating_point
from facegate.engine.pipeline import FaceEngine
from facegate.errors import FaceError
from facegate.liveness.actions import DEFAULT_ACTION_POLICY, ActionPolicy
from facegate.liveness.challenge import Challenge
from facegate.liveness.flash import (
    DEFAULT_FLASH_POLICY,
    ColourSample,
    FlashPolicy,
    colour_sample,
    judge_flash,
)
from facegate.liveness.judge import CueResult, IdentityPolicy, Verdict, judge
from facegate.liveness.planarity import DEFAULT_PLANARITY_POLICY, PlanarityPolicy, judge_planarity
from facegate.liveness.signals import (
    FaceTracker,
    FrameSignals,
    IrisModel,
    TrackedFace,
    frame_signals,
)
from facegate.liveness.video import (
    DEFAULT_VIDEO_LIMITS,
    Frame,
    VideoLimits,
    prefetch,
    read_frames,
)
from facegate.types import FaceBox

HEAD_ACTIONS = ("turn_left", "turn_right", "look_up", "look_down")
IDENTITY_OPERATING_POINT = "fmr_1e-2"  # frames of one video: a lenient, still meaningful bound
# tracked frames waiting for the signal worker: bounds memory (a 720p frame is 2.7 MB)
MAX_FRAMES_IN_FLIGHT = 4


@dataclass
class LivenessResult:
    verdict: Verdict
    challenge_id: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    # the embedding of the most frontal frame, for enrolment or verification; never serialised
    best_embedding: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "challenge_id": self.challenge_id,
            **self.verdict.to_dict(),
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
        }


@dataclass(frozen=True)
class FrameResult:
    signals: FrameSignals
    chip: np.ndarray | None
    colour: ColourSample | None


@dataclass
class VideoAnalysis:
    """What the judge needs from a video; the frames themselves are dropped as they are read."""

    signals: list[FrameSignals]
    chips: list[np.ndarray | None]  # the embedder's aligned chip per analysed frame
    colours: list[ColourSample]  # face and background colour per frame with a face
    timings_ms: dict[str, float]


class LivenessChecker:
    def __init__(
        self,
        engine: FaceEngine,
        *,
        limits: VideoLimits = DEFAULT_VIDEO_LIMITS,
        action_policy: ActionPolicy = DEFAULT_ACTION_POLICY,
        identity_policy: IdentityPolicy | None = None,
        flash_policy: FlashPolicy = DEFAULT_FLASH_POLICY,
        planarity_policy: PlanarityPolicy = DEFAULT_PLANARITY_POLICY,
        num_threads: int = 1,
    ) -> None:
        self.flash_policy = flash_policy
        self.planarity_policy = planarity_policy
        self.engine = engine
        self.iris = IrisModel(num_threads)
        self.limits = limits
        self.action_policy = action_policy
        self.identity_policy = identity_policy or IdentityPolicy()
        self.identity_threshold = operating_point(
            engine.space_id, IDENTITY_OPERATING_POINT
        ).threshold

    def analyse_video(
        self, video: bytes, colours_until_ms: float = float("inf"), eyes: bool = True
    ) -> VideoAnalysis:
        """Signals, chips and (up to ``colours_until_ms``) flash colours for every analysed
        frame; one pass, frames dropped as they are done. ``eyes=False`` skips the iris model
        (a third of the work) when no blink is asked for: eye openness is then not measured.

        Three threads share the work: decoding runs ahead (``prefetch``), this thread tracks the
        face (detector and mesh, which must go in frame order), and a worker turns each tracked
        frame into signals, a chip and a colour sample while the next frame is tracked. The
        models release the GIL while they run, so the two cores stay busy.
        """
        counter = getattr(self.engine.detector, "short", None)  # BlazeFace short-range alone
        tracker = FaceTracker(self.engine.detector, self.engine.mesh, self.iris, counter=counter)
        out = VideoAnalysis([], [], [], {"decode": 0.0})
        stage_ms = {"iris_pose_mouth": 0.0, "chips_colours": 0.0}
        pending: deque[Future[FrameResult]] = deque()

        def collect(result: FrameResult) -> None:
            out.signals.append(result.signals)
            out.chips.append(result.chip)
            if result.colour is not None:
                out.colours.append(result.colour)

        with ThreadPoolExecutor(1, thread_name_prefix="facegate-signals") as worker:
            t = time.perf_counter()
            for frame in prefetch(read_frames(video, self.limits)):
                out.timings_ms["decode"] += (time.perf_counter() - t) * 1000
                tracked = tracker.track(frame.rgb, frame.t_ms)
                job = worker.submit(
                    self._finish_frame, frame, tracked, colours_until_ms, eyes, stage_ms
                )
                pending.append(job)
                while len(pending) > MAX_FRAMES_IN_FLIGHT:
                    collect(pending.popleft().result())
                t = time.perf_counter()
            while pending:
                collect(pending.popleft().result())
        out.timings_ms.update(tracker.timings_ms)
        out.timings_ms.update(stage_ms)
        return out

    def _finish_frame(
        self,
        frame: Frame,
        tracked: TrackedFace,
        colours_until_ms: float,
        eyes: bool,
        stage_ms: dict[str, float],
    ) -> FrameResult:
        """The second stage of a frame, on the worker thread. It touches only the iris model and
        the embedder's aligner, which the tracking thread never uses."""
        t = time.perf_counter()
        sig = frame_signals(frame.rgb, tracked, self.iris if eyes else None)
        t2 = time.perf_counter()
        chip = colour = None
        if sig.face and sig.landmarks is not None and sig.box_xyxy is not None:
            box = FaceBox(sig.box_xyxy, 1.0)
            chip = self.engine.embedder.align(frame.rgb, box, sig.landmarks)
            if sig.landmarks.mesh is not None and frame.t_ms <= colours_until_ms:
                colour = colour_sample(frame.rgb, sig.landmarks.mesh, frame.t_ms)
        t3 = time.perf_counter()
        stage_ms["iris_pose_mouth"] += (t2 - t) * 1000
        stage_ms["chips_colours"] += (t3 - t2) * 1000
        return FrameResult(sig, chip, colour)

    def cues(self, challenge: Challenge, analysis: VideoAnalysis) -> list[CueResult]:
        """The attack-defence cues that apply to this challenge."""
        results: list[CueResult] = []
        if any(a in HEAD_ACTIONS for a in challenge.actions):
            results.append(judge_planarity(analysis.signals, self.planarity_policy))
        if challenge.flash:
            results += judge_flash(challenge.flash, analysis.colours, self.flash_policy)
        return results

    def judge_analysis(self, challenge: Challenge, analysis: VideoAnalysis) -> Verdict:
        chips = analysis.chips

        def embed(indices: list[int]) -> list[np.ndarray | None]:
            present = {i: chip for i in indices if (chip := chips[i]) is not None}
            vectors = dict(zip(present, self.engine.embedder.embed_chips(list(present.values()))))
            return [vectors.get(i) for i in indices]

        return judge(
            challenge.actions,
            analysis.signals,
            embed=embed,
            identity_threshold=self.identity_threshold,
            action_policy=self.action_policy,
            identity_policy=self.identity_policy,
            cues=self.cues(challenge, analysis),
        )

    def check(self, video: bytes, challenge: Challenge) -> LivenessResult:
        t0 = time.perf_counter()
        # colours are only needed while a flash is on the screen
        until = (
            self.flash_policy.max_lag_ms + sum(ms for _, ms in challenge.flash) + 500
            if challenge.flash
            else -1.0
        )
        analysis = self.analyse_video(
            video, colours_until_ms=until, eyes="blink" in challenge.actions
        )
        signals, chips, timings = analysis.signals, analysis.chips, analysis.timings_ms
        t1 = time.perf_counter()
        if not any(s.face for s in signals):
            raise FaceError("no face was found in the video", code="no_face")
        verdict = self.judge_analysis(challenge, analysis)
        t2 = time.perf_counter()
        timings["judge_and_identity"] = (t2 - t1) * 1000
        best = best_frame(signals, chips)
        embedding = None if best is None else self.engine.embedder.embed_chip(chips[best])  # type: ignore[arg-type]
        timings["total"] = (time.perf_counter() - t0) * 1000
        return LivenessResult(verdict, challenge.id, timings, embedding)


def best_frame(signals: list[FrameSignals], chips: list[np.ndarray | None]) -> int | None:
    """The most frontal frame with a face (smallest head rotation from the video's median)."""
    usable = [i for i, s in enumerate(signals) if s.face and chips[i] is not None]
    if not usable:
        return None
    pitch0 = float(np.median([signals[i].pitch_deg or 0.0 for i in usable]))
    return min(
        usable,
        key=lambda i: abs(signals[i].yaw_deg or 0.0) + abs((signals[i].pitch_deg or 0.0) - pitch0),
    )
