"""Challenge-response liveness: a signed challenge, then the video that answers it, judged on
the server; a live verdict yields a single-use session id for enrol or verify."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import File, Form, UploadFile

from facegate.errors import InputError
from facegate.liveness.actions import ACTIONS
from facegate.web.deps import AnalysesDep, CapturerDep, ServiceDep, read_upload
from facegate.web.problems import problem_responses
from facegate.web.routers import Router
from facegate.web.schemas import Challenge, ChallengeRequest, LivenessVerdict

router = Router(tags=["liveness"], responses=problem_responses(400, 401, 403, 429))


@router.post(
    "/v1/liveness/challenges",
    status_code=201,
    response_model=Challenge,
    responses=problem_responses(404),  # the subject it is for is unknown
)
def challenge(caller: CapturerDep, svc: ServiceDep, body: ChallengeRequest) -> dict[str, Any]:
    """A signed, expiring, single-use challenge chosen by the server: the actions to perform and
    the colours to flash, bound to the subject and purpose it is issued for."""
    actions = tuple(body.actions) if body.actions is not None else None
    if actions and any(a not in ACTIONS for a in actions):
        raise InputError(f"actions must be among {list(ACTIONS)}", code="invalid_actions")
    return svc.new_challenge(caller, actions, body.flash, body.subject_id, body.purpose)


@router.post(
    "/v1/liveness/sessions",
    status_code=201,
    response_model=LivenessVerdict,
    responses=problem_responses(404, 409, 410, 413, 503),
)
async def liveness_session(
    caller: CapturerDep,
    svc: ServiceDep,
    analyses: AnalysesDep,
    token: Annotated[str, Form(max_length=4096, description="the challenge's token")],
    video: Annotated[UploadFile, File(description="the recording (WebM, MP4)")],
    subject_id: Annotated[
        str | None, Form(description="the subject, unless the challenge names it")
    ] = None,
    purpose: Annotated[
        str | None, Form(description="enroll or verify, unless the challenge names it")
    ] = None,
) -> dict[str, Any]:
    """Judge a video against its challenge: the verdict with reasons, and a session id if live
    (usable once, for the challenge's subject and purpose)."""
    data = await read_upload(video)  # then the check, in the worker's bounded executor
    return await analyses.run(lambda: svc.submit_liveness(caller, token, data, subject_id, purpose))
