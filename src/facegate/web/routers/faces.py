"""Enrolment, verification, 1:N search and duplicate clusters.

A probe face comes either as an ``image`` upload or as a passed, single-use
``liveness_session`` (POST /v1/liveness/sessions); the session wins when both are sent. The
upload is read on the event loop; everything after (face analysis, matching, the database) runs
in the worker's bounded executor (``Analyses``), so the loop stays free for other requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import File, Form, UploadFile

from facegate.errors import InputError
from facegate.service import Caller, FaceService, Probe
from facegate.web.deps import (
    AnalysesDep,
    DuplicatesDep,
    EnrollerDep,
    SearcherDep,
    ServiceDep,
    VerifierDep,
    read_upload,
)
from facegate.web.problems import problem_responses
from facegate.web.routers import Router
from facegate.web.schemas import Duplicates, Enrolled, EnrolledWithDocument, SearchResult, Verified

router = Router(tags=["faces"], responses=problem_responses(401, 403, 429))

# statuses of a route that reads a probe face
PROBE_PROBLEMS = problem_responses(400, 404, 409, 413, 422, 503)  # 503: the worker is busy

ImageFile = Annotated[
    UploadFile | None, File(description="a photo with one face (JPEG, PNG, WebP)")
]
SessionField = Annotated[
    str | None, Form(description="a passed liveness session id, instead of an image")
]


async def probe_of(
    svc: FaceService,
    caller: Caller,
    image: UploadFile | None,
    session: str | None,
    subject_id: str,
    purpose: str,
) -> Callable[[], Probe]:
    """How to get the probe (run it in the executor): from the liveness session if given (it
    must have been made for this subject and purpose), else from the uploaded image, whose bytes
    are read here."""
    if session:
        return lambda: svc.probe_from_session(caller, session, subject_id, (purpose,))
    if image is None:
        raise InputError("send an image file or a liveness_session id", code="missing_probe")
    data = await read_upload(image)
    return lambda: svc.probe_from_image(data)


@router.post(
    "/v1/subjects/{subject_id}/enroll",
    status_code=201,
    response_model=Enrolled,
    responses=PROBE_PROBLEMS,
)
async def enroll(
    caller: EnrollerDep,
    svc: ServiceDep,
    analyses: AnalysesDep,
    subject_id: str,
    image: ImageFile = None,
    liveness_session: SessionField = None,
    override: Annotated[
        bool,
        Form(description="admin only: enrol a face that does not match the subject's (audited)"),
    ] = False,
) -> dict[str, Any]:
    """Enrol a consenting subject's face; quality reasons on refusal, duplicates flagged. A
    subject with templates takes only the same face."""
    probe = await probe_of(svc, caller, image, liveness_session, subject_id, "enroll")
    source = "liveness" if liveness_session else "photo"
    return await analyses.run(lambda: svc.enroll(caller, subject_id, probe(), source, override))


@router.post(
    "/v1/subjects/{subject_id}/enroll/id-document",
    status_code=201,
    response_model=EnrolledWithDocument,
    responses=PROBE_PROBLEMS,
)
async def enroll_document(
    caller: EnrollerDep,
    svc: ServiceDep,
    analyses: AnalysesDep,
    subject_id: str,
    document: Annotated[UploadFile, File(description="a photo of the identity document")],
    image: ImageFile = None,
    liveness_session: SessionField = None,
) -> dict[str, Any]:
    """Enrol from a live capture that must match the document photo 1:1 (only it is kept)."""
    document_bytes = await read_upload(document)
    probe = await probe_of(svc, caller, image, liveness_session, subject_id, "enroll")
    return await analyses.run(
        lambda: svc.enroll_with_document(caller, subject_id, document_bytes, probe())
    )


@router.post(
    "/v1/subjects/{subject_id}/verify",
    response_model=Verified,
    responses={**PROBE_PROBLEMS, **problem_responses(423)},
)
async def verify(
    caller: VerifierDep,
    svc: ServiceDep,
    analyses: AnalysesDep,
    subject_id: str,
    image: ImageFile = None,
    liveness_session: SessionField = None,
) -> dict[str, Any]:
    """1:1: does the probe match the subject's enrolled face at the tenant's operating point?"""
    probe = await probe_of(svc, caller, image, liveness_session, subject_id, "verify")
    return await analyses.run(lambda: svc.verify(caller, subject_id, probe()))


@router.post("/v1/search", response_model=SearchResult, responses=PROBE_PROBLEMS)
async def search(
    caller: SearcherDep,
    svc: ServiceDep,
    analyses: AnalysesDep,
    subject_id: Annotated[str, Form(description="the consenting subject the probe belongs to")],
    image: ImageFile = None,
    liveness_session: SessionField = None,
    k: Annotated[int, Form(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """1:N: other subjects whose face matches the probe above the duplicate threshold. The probe
    must be the named subject's own (its verify liveness session, or a photo matching it 1:1)."""
    probe = await probe_of(svc, caller, image, liveness_session, subject_id, "verify")
    return await analyses.run(lambda: svc.search(caller, subject_id, probe(), k))


@router.get("/v1/duplicates", response_model=Duplicates)
def duplicates(caller: DuplicatesDep, svc: ServiceDep) -> dict[str, Any]:
    """Clusters of subjects that share a face (connected components above the threshold)."""
    return svc.duplicates(caller)
