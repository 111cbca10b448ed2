"""Subjects (the people a tenant enrols), their consent, erasure and the data export."""

from __future__ import annotations

from typing import Any

from facegate.web.deps import AdminDep, CapturerDep, EnrollerDep, ServiceDep
from facegate.web.problems import problem_responses
from facegate.web.routers import Router
from facegate.web.schemas import (
    Consent,
    ConsentCreate,
    ConsentWithdrawn,
    Subject,
    SubjectCreate,
    SubjectErased,
    SubjectExport,
)

router = Router(responses=problem_responses(401, 403, 404, 429))


@router.post(
    "/v1/subjects",
    tags=["subjects"],
    status_code=201,
    response_model=Subject,
    responses=problem_responses(400, 409),
)
def subject_create(caller: EnrollerDep, svc: ServiceDep, body: SubjectCreate) -> dict[str, Any]:
    """Create a subject (no face yet: consent comes first)."""
    return svc.create_subject(caller, body.subject_id, body.external_ref)


@router.get("/v1/subjects/{subject_id}", tags=["subjects"], response_model=Subject)
def subject_get(caller: CapturerDep, svc: ServiceDep, subject_id: str) -> dict[str, Any]:
    """The subject, its number of templates and its active consent."""
    return svc.subject_view(caller, subject_id)


@router.delete("/v1/subjects/{subject_id}", tags=["subjects"], response_model=SubjectErased)
def subject_erase(caller: EnrollerDep, svc: ServiceDep, subject_id: str) -> dict[str, Any]:
    """Erase the subject's templates and withdraw its consent; the audit trail stays."""
    return svc.erase_subject(caller, subject_id)


@router.get("/v1/subjects/{subject_id}/export", tags=["subjects"], response_model=SubjectExport)
def subject_export(caller: AdminDep, svc: ServiceDep, subject_id: str) -> dict[str, Any]:
    """Everything stored about the subject except biometric data (for access requests)."""
    return svc.export_subject(caller, subject_id)


@router.post(
    "/v1/subjects/{subject_id}/consents",
    tags=["consent"],
    status_code=201,
    response_model=Consent,
    responses=problem_responses(400, 422),
)
def consent_grant(
    caller: EnrollerDep, svc: ServiceDep, subject_id: str, body: ConsentCreate
) -> dict[str, Any]:
    """Record consent to the tenant's current consent text (purpose, version, method, time)."""
    return svc.grant_consent(caller, subject_id, body.purpose, body.text_version, body.method)


@router.delete(
    "/v1/subjects/{subject_id}/consents", tags=["consent"], response_model=ConsentWithdrawn
)
def consent_withdraw(caller: EnrollerDep, svc: ServiceDep, subject_id: str) -> dict[str, Any]:
    """Withdraw consent; the subject's templates are erased at once."""
    return svc.withdraw_consent(caller, subject_id)
