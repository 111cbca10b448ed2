"""The capture page's API: a short-lived capture link stands in for an API key in the person's
browser, scoped to one subject and one flow (enrol or verify)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import File, Form, UploadFile

from facegate.web.deps import (
    AnalysesDep,
    CaptureDep,
    CapturerDep,
    CaptureTokenDep,
    ServiceDep,
    read_upload,
)
from facegate.web.problems import problem_responses
from facegate.web.routers import Router
from facegate.web.schemas import (
    CaptureDeclined,
    CaptureInfo,
    CaptureLink,
    CaptureLinkCreate,
    CaptureLinkRevoked,
    CaptureLinkStatus,
    CaptureResult,
    Challenge,
    Consent,
)

router = Router(tags=["capture"], responses=problem_responses(401))


@router.post(
    "/v1/capture-links",
    status_code=201,
    response_model=CaptureLink,
    responses=problem_responses(400, 403, 404, 429),
)
def capture_link(caller: CapturerDep, svc: ServiceDep, body: CaptureLinkCreate) -> dict[str, Any]:
    """A short-lived link to the capture page for one subject and one flow. ``actions`` and
    ``flash: false`` fix its check: evaluation tenants only (``allow_chosen_actions``)."""
    actions = None if body.actions is None else tuple(body.actions)
    return svc.new_capture_link(
        caller, body.subject_id, body.flow, body.ttl_s, actions=actions, flash=body.flash
    )


@router.get(
    "/v1/capture-links/{link_id}",
    response_model=CaptureLinkStatus,
    responses=problem_responses(403, 404, 429),
)
def capture_link_status(caller: CapturerDep, svc: ServiceDep, link_id: str) -> dict[str, Any]:
    """The link's state for your back end: pending, passed, failed, declined, expired or revoked,
    with the result of its last capture (live, match, reason codes; no biometric data)."""
    return svc.capture_link_status(caller, link_id)


@router.delete(
    "/v1/capture-links/{link_id}",
    response_model=CaptureLinkRevoked,
    responses=problem_responses(403, 404, 429),
)
def capture_link_revoke(caller: CapturerDep, svc: ServiceDep, link_id: str) -> dict[str, Any]:
    """Revoke a capture link: its page stops working at once."""
    return svc.revoke_capture_link(caller, link_id)


@router.get("/v1/capture/info", response_model=CaptureInfo)
def capture_info(ctx: CaptureDep, svc: ServiceDep) -> dict[str, Any]:
    """What the page shows: the flow, the consent text (unless given) and the alternative."""
    caller, subject_id, flow = ctx
    return svc.capture_info(caller, subject_id, flow)


@router.post(
    "/v1/capture/consent",
    status_code=201,
    response_model=Consent,
    responses=problem_responses(404),
)
def capture_consent(ctx: CaptureDep, svc: ServiceDep) -> dict[str, Any]:
    """The person agreed to the current consent text on the page."""
    caller, subject_id, _ = ctx
    return svc.capture_consent(caller, subject_id)


@router.post("/v1/capture/decline", response_model=CaptureDeclined)
def capture_decline(ctx: CaptureDep, svc: ServiceDep) -> dict[str, Any]:
    """The person declined: recorded, and the non-face alternative is shown."""
    caller, subject_id, _ = ctx
    return svc.capture_decline(caller, subject_id)


@router.post(
    "/v1/capture/challenge",
    status_code=201,
    response_model=Challenge,
    responses=problem_responses(403, 409, 423),
)
def capture_challenge(ctx: CaptureDep, svc: ServiceDep) -> dict[str, Any]:
    """The server's challenge with a colour flash (consent required first); counted against
    the subject's attempts until a live answer arrives."""
    caller, subject_id, flow = ctx
    return svc.capture_challenge(caller, subject_id, flow)


@router.post(
    "/v1/capture/submit",
    response_model=CaptureResult,
    responses=problem_responses(400, 403, 404, 409, 410, 413, 422, 423, 503),
)
async def capture_submit(
    capture_token: CaptureTokenDep,
    svc: ServiceDep,
    analyses: AnalysesDep,
    token: Annotated[str, Form(max_length=4096, description="the challenge's token")],
    video: Annotated[UploadFile, File(description="the recording (WebM, MP4)")],
) -> dict[str, Any]:
    """Liveness, then enrolment or verification from the same recording, in one step."""
    data = await read_upload(video)  # then the check, in the worker's bounded executor
    return await analyses.run(lambda: svc.capture_submit(capture_token, token, data))
