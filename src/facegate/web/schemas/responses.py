"""Response bodies: exactly the JSON the routes returned before they had models (other tools rely
on every key). No ciphertext, vector or key material appears in any of them; a template is
described by id, source and embedding space only.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from facegate.web.schemas.common import Out

# one (colour, milliseconds) step of a challenge's flash
FLASH_PAIR: dict[str, Any] = {
    "type": "array",
    "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    "minItems": 2,
    "maxItems": 2,
}

# -- health -------------------------------------------------------------------------------------


class Health(Out):
    status: str = Field(examples=["ok"])


class Readiness(Out):
    status: str = Field(examples=["ready"])
    embedding_space: str = Field(description="the embedder's space id; templates are per space")
    liveness: bool = Field(description="whether liveness checks are enabled on this server")


# -- tenant and keys ----------------------------------------------------------------------------


class Tenant(Out):
    tenant_id: str
    name: str
    operating_point: str = Field(examples=["fmr_1e-3"])
    duplicate_operating_point: str
    duplicate_policy: str = Field(description="flag or reject")
    retention_days: int
    require_liveness: bool
    allow_chosen_actions: bool
    reveal_scores: bool
    live_match_clears_lock: bool
    allow_video_upload: bool = Field(
        description="whole-video uploads accepted (default false: stream /v1/liveness/stream)"
    )
    consent_text: str
    consent_text_version: str
    non_face_alternative: str
    embed_origins: list[str] = Field(
        description="origins allowed to frame the capture page (docs/embedding.md)"
    )


class QuarantinedTemplate(Out):
    subject_id: str
    template_id: str
    quarantined_at: float


class QuarantineList(Out):
    templates: list[QuarantinedTemplate]


class KeyCreated(Out):
    key: str = Field(description="fg_<id>_<secret>; shown once, stored as a hash")
    key_id: str
    roles: list[str]


class KeyRevoked(Out):
    key_id: str
    revoked: bool


# -- subjects and consent -----------------------------------------------------------------------


class Consent(Out):
    id: str | None
    purpose: str | None
    text_version: str | None
    method: str | None
    granted_at: float | None
    withdrawn_at: float | None


class SubjectLock(Out):
    locked_until: float | None = Field(description="unix time the lock ends, if locked")
    lockouts: int = Field(description="how often the subject has been locked")


class Subject(Out):
    subject_id: str
    external_ref: str | None
    created_at: float
    last_activity_at: float | None
    templates: int = Field(description="how many templates are enrolled")
    consent: Consent | None = Field(description="the active consent, if any")
    lock: SubjectLock | None = Field(default=None, description="the lockout's state")


class SubjectErased(Out):
    subject_id: str
    erased: bool
    templates_erased: int


class ConsentWithdrawn(Out):
    consents_withdrawn: int
    templates_erased: int


class TemplateInfo(Out):
    template_id: str
    created_at: float
    source: str = Field(description="photo, liveness or id_document_match")
    embedding_space: str
    biometric_data: str = Field(examples=["withheld (protected template)"])


class AuditEntry(Out):
    seq: int
    at: float
    actor: str
    action: str
    outcome: str
    details: dict[str, Any]


class SubjectExport(Out):
    """Everything stored about a subject except biometric data."""

    subject_id: str
    external_ref: str | None
    created_at: float
    last_activity_at: float | None
    consent: Consent | None
    consents: list[Consent]
    templates: list[TemplateInfo]
    audit: list[AuditEntry]


# -- enrolment, verification, search ------------------------------------------------------------


class QualityValue(Out):
    value: float
    passed: bool
    bound: str = Field(examples=[">= 20.0"])
    reason: str | None = Field(default=None, description="the refusal code, when not passed")


class ProbeLiveness(Out):
    checked: bool = Field(description="whether the probe came from a liveness session")
    live: bool | None
    session_id: str | None = Field(default=None, description="present when checked")


class Candidate(Out):
    subject_id: str
    score: float


class OperatingPoint(Out):
    operating_point: str
    threshold: float
    fmr_target: float


class DocumentMatch(Out):
    score: float
    threshold: float
    fmr_target: float


class Enrolled(Out):
    subject_id: str
    template_id: str
    source: str = Field(description="photo, liveness or id_document_match")
    liveness: ProbeLiveness
    quality: dict[str, QualityValue] | None = Field(description="null for a liveness session")
    duplicates: list[Candidate] = Field(description="other subjects with the same face")
    duplicate_policy: str
    duplicate_threshold: OperatingPoint


class EnrolledWithDocument(Enrolled):
    document_match: DocumentMatch


class Verified(Out):
    subject_id: str
    match: bool
    score: float | None = Field(
        description="cosine similarity, higher = more alike; null on a non-match unless the"
        " tenant reveals scores"
    )
    threshold: float
    operating_point: str
    fmr_target: float
    liveness: ProbeLiveness
    quality: dict[str, QualityValue] | None


class SearchResult(Out):
    probe_subject_id: str
    candidates: list[Candidate]
    threshold: float
    operating_point: str
    fmr_target: float
    gallery_size: int


class DuplicatePair(Out):
    subjects: list[str]
    score: float


class DuplicateCluster(Out):
    subjects: list[str]
    pairs: list[DuplicatePair]


class Duplicates(Out):
    clusters: list[DuplicateCluster]
    threshold: float
    operating_point: str


# -- liveness -----------------------------------------------------------------------------------


class Challenge(Out):
    v: int
    id: str
    nonce: str
    actions: list[str]
    issued_at: float
    expires_at: float
    flash: list[tuple[str, int]] | None = Field(
        description="(colour, milliseconds) shown on the screen in order, or null",
        # each pair as a two-item array of string or integer: the tuple's ``prefixItems`` is
        # valid OpenAPI 3.1, but schemathesis and some generators read it as 3.0's ``items``
        json_schema_extra={"anyOf": [{"type": "array", "items": FLASH_PAIR}, {"type": "null"}]},
    )
    subject_id: str | None = Field(default=None, description="the subject it was issued for")
    purpose: str | None = Field(default=None, description="enroll or verify")
    token: str = Field(description="signed; send it back with the video")


class Reason(Out):
    code: str
    message: str
    value: float | None = None
    threshold: float | None = None


class ActionOutcome(Out):
    action: str
    found: bool
    at_s: float | None = Field(default=None, description="present when found")


class ActionEvent(Out):
    action: str
    start_s: float
    end_s: float
    peak: float


class CueOutcome(Out):
    name: str
    score: float
    threshold: float
    passed: bool
    detail: str


class LivenessVerdict(Out):
    session_id: str | None = Field(description="single use, for enroll or verify; null if not live")
    challenge_id: str
    live: bool
    reasons: list[Reason]
    actions: list[ActionOutcome]
    events: list[ActionEvent]
    frames_analysed: int
    frames_with_face: int
    identity: dict[str, Any]
    cues: list[CueOutcome]
    timings_ms: dict[str, float]


# -- capture page -------------------------------------------------------------------------------


class CaptureLink(Out):
    id: str = Field(description="the link's id: DELETE /v1/capture-links/{id} revokes it")
    capture_token: str
    url: str
    flow: str
    expires_at: float


class CaptureOutcome(Out):
    live: bool | None
    match: bool | None = Field(description="verify links: whether the face matched")
    enrolled: bool
    reasons: list[str] = Field(description="reason codes of a verdict that was not live")


class CaptureLinkStatus(Out):
    id: str
    status: str = Field(examples=["pending", "passed", "failed", "declined", "expired", "revoked"])
    flow: str
    subject_id: str
    created_at: float
    expires_at: float
    completed_at: float | None
    result: CaptureOutcome | None


class CaptureLinkRevoked(Out):
    id: str
    revoked: bool


class CaptureInfo(Out):
    flow: str
    consent_given: bool
    consent_text: str
    consent_text_version: str
    non_face_alternative: str


class CaptureDeclined(Out):
    non_face_alternative: str


class CaptureResult(Out):
    flow: str
    live: bool
    reasons: list[Reason]
    actions: list[ActionOutcome]
    result: Enrolled | Verified | None = Field(description="null when not live")
