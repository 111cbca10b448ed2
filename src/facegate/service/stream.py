"""Streamed liveness on the service: a session per WebSocket, frames analysed as they arrive.

Why a second path next to ``LivenessSessions.submit``: an uploaded video can be rendered offline
against a challenge known in full (docs/attack-defence.md). Here the server keeps the challenge,
reveals it step by step (``facegate.liveness.stream``) and analyses each frame on a worker thread
while the next arrives, so the decision is ready about as soon as the last frame is in. The end
is the same as an upload's: the verdict is judged by ``facegate.liveness.judge`` with the timed
cues added, the attempt settled, a single-use session stored for the bound subject and purpose,
and the check audited. Frames live in memory only, one at a time; nothing is written or logged.
"""

from __future__ import annotations

import io
import secrets
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from random import Random
from typing import Any

import cv2
import numpy as np
from PIL import Image

from facegate.errors import ConflictError, InputError, UnavailableError
from facegate.liveness.challenge import ChallengePolicy, create_challenge
from facegate.liveness.check import HEAD_ACTIONS, LivenessChecker, best_frame
from facegate.liveness.flash import ColourSample, colour_sample
from facegate.liveness.judge import Reason, Verdict, judge
from facegate.liveness.planarity import judge_planarity
from facegate.liveness.signals import FaceTracker, FrameSignals, IrisModel, frame_signals
from facegate.liveness.stream import (
    DEFAULT_STREAM_POLICY,
    StreamClock,
    StreamPolicy,
    action_window_reasons,
    judge_stream_flash,
    plan_steps,
)
from facegate.service.attempts import Attempts
from facegate.service.capture import Capture, require_chosen_allowed
from facegate.service.context import ENGINE_LOCK, Caller, ServiceContext
from facegate.service.liveness import check_purpose
from facegate.service.policy import LIVENESS_SESSION_TTL_S
from facegate.service.sealed_writes import add_liveness_session
from facegate.types import FaceBox

HEADER = struct.Struct("<d")  # each binary message: client capture time (ms, float64) + JPEG
MAX_BACKLOG = 30  # frames waiting for analysis (2 s at 15 fps): more means the server is behind


@dataclass
class StreamRun:
    """One session: the clock, the hidden challenge and the analysis so far (no frames)."""

    caller: Caller
    subject_id: str
    purpose: str
    challenge_id: str
    actions: tuple[str, ...]
    bind_actions: bool  # False where the caller chose the actions (evaluation tenants)
    clock: StreamClock
    started: float
    capture_link: str | None = None
    flash: bool = True  # False: no colour step (a capture link of an evaluation tenant)
    signals: list[FrameSignals] = field(default_factory=list)
    chips: list[np.ndarray | None] = field(default_factory=list)
    colours: list[ColourSample] = field(default_factory=list)
    feedback: str | None = None
    analysis_failure: Reason | None = None
    submitted: int = 0  # written by the event loop only
    analysed: int = 0  # written by the worker only
    first_client_ms: float | None = None
    analysis_ms: float = 0.0
    worker: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="facegate-stream")
    )

    @property
    def failure(self) -> Reason | None:
        return self.clock.failure or self.analysis_failure


class StreamSessions:
    """Opens, feeds and finishes streamed sessions. The face models are shared with every other
    check of the process, so frame analysis runs under one lock (one frame at a time)."""

    def __init__(
        self,
        ctx: ServiceContext,
        attempts: Attempts,
        capture: Capture,
        policy: StreamPolicy = DEFAULT_STREAM_POLICY,
    ) -> None:
        self.ctx, self.attempts, self.capture, self.policy = ctx, attempts, capture, policy
        self._models = ENGINE_LOCK  # shared with the upload analyses of the web layer
        self._iris: IrisModel | None = None
        self._trackers: dict[int, FaceTracker] = {}

    @property
    def checker(self) -> LivenessChecker:
        if self.ctx.checker is None:
            raise UnavailableError(
                "liveness is not enabled on this server", code="liveness_disabled"
            )
        return self.ctx.checker

    def open(
        self,
        caller: Caller,
        subject_id: str | None,
        purpose: str | None,
        actions: tuple[str, ...] | None = None,
        capture_link: str | None = None,
        flash: bool | None = None,
    ) -> StreamRun:
        """Check the caller may start a check for this subject now, choose the hidden challenge
        and count it as a failed attempt until a live verdict settles it. Fixed ``actions`` and
        ``flash=False`` only on an evaluation tenant (``require_chosen_allowed``)."""
        ctx = self.ctx
        self.checker  # noqa: B018 - refuses at once where liveness is off
        tenant = ctx.tenant(caller.tenant_id)
        if subject_id is None or purpose is None:
            raise InputError(
                "name the subject_id and purpose (enroll or verify)", code="subject_required"
            )
        check_purpose(purpose)
        require_chosen_allowed(tenant, actions, flash)
        ctx.subject(caller, subject_id)
        ctx.require_consent(caller, subject_id)
        if (
            capture_link is not None
            and purpose == "enroll"
            and not ctx.store.spend_capture_link(caller.tenant_id, capture_link, ctx.now())
        ):
            raise ConflictError(
                "this enrolment link has been used; ask for a new one", code="capture_link_used"
            )
        challenge = create_challenge(
            ChallengePolicy(flash=flash is not False),
            now=ctx.now(),
            actions=actions,
            subject_id=subject_id,
            purpose=purpose,
        )
        self.attempts.begin(
            caller, tenant, subject_id, "challenge", "liveness.stream", challenge.id
        )
        rng = Random(secrets.randbits(64))
        steps = plan_steps(challenge.actions, challenge.flash or (), rng, self.policy)
        return StreamRun(
            caller,
            subject_id,
            purpose,
            challenge.id,
            challenge.actions,
            actions is None,
            StreamClock(steps, self.policy),
            time.monotonic(),
            capture_link,
            flash is not False,
        )

    # -- frames ---------------------------------------------------------------------------------

    def frame(self, run: StreamRun, message: bytes, arrival_ms: float) -> int | None:
        """Time one binary message and queue its analysis; the index of a step to reveal now."""
        if len(message) <= HEADER.size:
            run.clock.heard(arrival_ms)
            run.clock.fail("frame_malformed", "a frame had no picture")
            return None
        (client_ms,) = HEADER.unpack_from(message)
        reveal = run.clock.frame(client_ms, arrival_ms, len(message) - HEADER.size)
        if run.failure is not None:
            return None
        if run.submitted - run.analysed >= MAX_BACKLOG:
            run.analysis_failure = Reason("server_busy", "the server could not keep up; try again")
            return None
        if run.first_client_ms is None:
            run.first_client_ms = client_ms
        run.submitted += 1
        jpeg, t_ms = message[HEADER.size :], client_ms - run.first_client_ms
        run.worker.submit(self._analyse, run, jpeg, t_ms)
        return reveal

    def _decode(self, jpeg: bytes) -> np.ndarray | None:
        """RGB pixels of a JPEG within the size limits (checked from the header first)."""
        try:
            with Image.open(io.BytesIO(jpeg)) as img:
                if img.format != "JPEG":
                    return None
                w, h = img.size
        except Exception:
            return None
        if not (16 <= w <= self.policy.max_width and 16 <= h <= self.policy.max_height):
            return None
        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _analyse(self, run: StreamRun, jpeg: bytes, t_ms: float) -> None:
        """Decode, track and measure one frame (worker thread; frames in order)."""
        t0 = time.perf_counter()
        try:
            if run.failure is not None:
                return
            rgb = self._decode(jpeg)
            if rgb is None:
                run.analysis_failure = Reason(
                    "frame_malformed", "a frame was not a JPEG picture within the size limits"
                )
                return
            checker = self.checker
            eyes = "blink" in run.actions
            with self._models:
                tracker = self._trackers.get(id(run))
                if tracker is None:
                    if self._iris is None:
                        self._iris = IrisModel(1)
                    counter = getattr(checker.engine.detector, "short", None)
                    tracker = FaceTracker(
                        checker.engine.detector, checker.engine.mesh, self._iris, counter=counter
                    )
                    self._trackers[id(run)] = tracker
                tracked = tracker.track(rgb, t_ms)
                sig = frame_signals(rgb, tracked, self._iris if eyes else None)
                chip = None
                if sig.face and sig.landmarks is not None and sig.box_xyxy is not None:
                    chip = checker.engine.embedder.align(
                        rgb, FaceBox(sig.box_xyxy, 1.0), sig.landmarks
                    )
                    if sig.landmarks.mesh is not None:
                        run.colours.append(colour_sample(rgb, sig.landmarks.mesh, t_ms))
            run.signals.append(sig)
            run.chips.append(chip)
            run.feedback = feedback(sig, rgb.shape[1])
        except Exception:  # a bug must end the session, never the server; no data in the reason
            run.analysis_failure = Reason("analysis_failed", "the frame could not be analysed")
        finally:
            run.analysis_ms += (time.perf_counter() - t0) * 1000
            run.analysed += 1

    # -- the end --------------------------------------------------------------------------------

    def close(self, run: StreamRun) -> None:
        """Stop the worker and drop the tracker (safe to call twice)."""
        run.worker.shutdown(wait=True, cancel_futures=True)
        with self._models:
            self._trackers.pop(id(run), None)

    def verdict(self, run: StreamRun) -> tuple[Verdict, np.ndarray | None]:
        """Judge the analysed stream: the existing judge with the timed cues added."""
        checker = self.checker
        if run.failure is not None:
            reasons = [run.failure]
            return Verdict(False, reasons, [], [(a, None) for a in run.actions], 0, 0), None
        timeline = run.clock.client_timeline()
        p = self.policy
        colours = [
            (str(step.value), t, float(step.duration_ms))
            for step, t in timeline
            if step.kind == "colour"
        ]
        cues = []
        if run.flash:
            cues = judge_stream_flash(colours, run.colours, p.max_reflection_lag_ms, p.flash)
        if any(a in HEAD_ACTIONS for a in run.actions):
            cues.append(judge_planarity(run.signals, checker.planarity_policy))
        chips = run.chips

        def embed(indices: list[int]) -> list[np.ndarray | None]:
            present = {i: chip for i in indices if (chip := chips[i]) is not None}
            found = checker.engine.embedder.embed_chips(list(present.values()))
            vectors = dict(zip(present, found))
            return [vectors.get(i) for i in indices]

        with self._models:
            verdict = judge(
                run.actions,
                run.signals,
                embed=embed,
                identity_threshold=checker.identity_threshold,
                action_policy=checker.action_policy,
                identity_policy=checker.identity_policy,
                cues=cues,
            )
            best = best_frame(run.signals, chips)
            embedding = None
            if best is not None and chips[best] is not None:
                embedding = checker.engine.embedder.embed_chip(chips[best])  # type: ignore[arg-type]
        if run.bind_actions:
            extra = action_window_reasons(timeline, verdict.events, p.max_reflection_lag_ms)
            verdict.reasons += extra
            verdict.live = verdict.live and not extra
        return verdict, embedding

    def finish(self, run: StreamRun) -> dict[str, Any]:
        """Wait for the analysis, judge, settle the attempt, store a session if live, audit."""
        t0 = time.perf_counter()
        self.close(run)
        ctx = self.ctx
        tenant = ctx.tenant(run.caller.tenant_id)
        verdict, embedding = self.verdict(run)
        live = verdict.live
        self.attempts.settle(run.caller, tenant, run.subject_id, run.challenge_id, ok=live)
        session_id = "ls_" + secrets.token_hex(12)
        out = verdict.to_dict()
        summary = {"reasons": out["reasons"], "challenge_id": run.challenge_id}
        add_liveness_session(  # sealed under the keys current at the write, not ``tenant``'s
            ctx,
            run.caller.tenant_id,
            session_id,
            live,
            embedding,
            summary,
            ctx.now() + LIVENESS_SESSION_TTL_S,
            run.subject_id,
            run.purpose,
        )
        ctx.audit(
            run.caller,
            "liveness.check",
            "live" if live else "not_live",
            subject_id=run.subject_id,
            details={
                "challenge_id": run.challenge_id,
                "purpose": run.purpose,
                "stream": True,
                "reasons": [r["code"] for r in out["reasons"]],
            },
        )
        result = None
        if run.capture_link is not None:  # the capture page: enrol or verify at once
            result = self.capture.finish(
                run.caller, run.subject_id, run.purpose, session_id, live, out["reasons"]
            )
        return {
            "session_id": session_id if live and run.capture_link is None else None,
            "challenge_id": run.challenge_id,
            "flow": run.purpose,
            "result": result,
            **out,
            "stream": run.clock.timing(),
            "timings_ms": {
                "analysis": round(run.analysis_ms, 1),
                "decision": round((time.perf_counter() - t0) * 1000, 1),
            },
        }


def feedback(sig: FrameSignals, width: int) -> str:
    """A live hint for the person (the page's message table turns it into words)."""
    if not sig.face or sig.box_xyxy is None:
        return "no_face"
    if (sig.faces_counted or 0) > 1:
        return "multiple_faces"
    share = (sig.box_xyxy[2] - sig.box_xyxy[0]) / max(width, 1)
    if share < 0.2:
        return "move_closer"
    if share > 0.7:
        return "move_back"
    return "ok"
