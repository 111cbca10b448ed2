"""Request bodies (JSON). Multipart uploads are declared in the routes with ``File``/``Form``, so
OpenAPI shows them as binary fields.

Patterns and bounds are the API's first line of input checking: a body outside them answers
400 ``bad_request`` naming the fields, before the service sees it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# No id made only of dots or starting with one: clients normalise "." and ".." path segments,
# so such a subject would collide with the routes around it.
SUBJECT_ID = r"^[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,63}$"
PURPOSE = r"^(enroll|verify)$"
OPERATING_POINT = r"^fmr_1e-[234]$"


class SubjectCreate(BaseModel):
    subject_id: str | None = Field(
        default=None, pattern=SUBJECT_ID, description="your id for the person; generated if absent"
    )
    external_ref: str | None = Field(default=None, max_length=200)


class ConsentCreate(BaseModel):
    text_version: str = Field(
        max_length=40, description="the consent-text version the person agreed to (GET /v1/tenant)"
    )
    method: str = Field(
        max_length=80, description="how consent was given, e.g. 'checkbox on capture page'"
    )
    purpose: str = Field(default="face_verification", pattern=r"^face_verification$")


class KeyCreate(BaseModel):
    roles: list[str] = Field(description="among enroll, verify, search, admin")
    label: str = Field(default="", max_length=80)


class CaptureLinkCreate(BaseModel):
    subject_id: str = Field(pattern=SUBJECT_ID)
    flow: str = Field(pattern=r"^(enroll|verify)$")
    ttl_s: float = Field(default=600, ge=30, le=3600, description="seconds the link stays valid")
    actions: list[str] | None = Field(
        default=None, max_length=6, description="evaluation tenants only: fix the actions"
    )
    flash: bool | None = Field(
        default=None, description="evaluation tenants only: false leaves the colour flash out"
    )


class ChallengeRequest(BaseModel):
    """Empty for the server's own choice (2-4 actions and a colour flash). ``actions`` and
    ``flash: false`` are refused unless the tenant's admin enabled ``allow_chosen_actions``."""

    subject_id: str | None = Field(
        default=None, pattern=SUBJECT_ID, description="the consenting subject it is for"
    )
    purpose: str | None = Field(
        default=None, pattern=PURPOSE, description="enroll or verify: what its session may do"
    )
    actions: list[str] | None = Field(
        default=None, max_length=6, description="evaluation tenants only: fix the actions"
    )
    flash: bool | None = Field(
        default=None, description="evaluation tenants only: false leaves the colour flash out"
    )


class TenantUpdate(BaseModel):
    """Only the fields sent are changed. Strict: ``0`` or ``"1"`` is not taken for a boolean or a
    number of days, since a setting that guards people must mean what the admin typed."""

    model_config = ConfigDict(strict=True)

    operating_point: str | None = Field(default=None, pattern=OPERATING_POINT)
    duplicate_operating_point: str | None = Field(default=None, pattern=OPERATING_POINT)
    duplicate_policy: str | None = Field(default=None, pattern=r"^(flag|reject)$")
    retention_days: int | None = Field(default=None, ge=1, le=3650)
    require_liveness: bool | None = Field(
        default=None, description="false accepts still photos: audited, and a bought photo passes"
    )
    allow_chosen_actions: bool | None = Field(
        default=None, description="evaluation only: callers choose actions and may skip the flash"
    )
    reveal_scores: bool | None = Field(
        default=None, description="also give the score of a non-match (an identification aid)"
    )
    live_match_clears_lock: bool | None = Field(
        default=None, description="a live genuine match lifts a lock an attacker caused"
    )
    allow_video_upload: bool | None = Field(
        default=None,
        description="accept whole recorded videos (POST /v1/liveness/sessions, /v1/capture/submit)"
        " for clients that cannot stream: an offline renderer can then answer the challenge",
    )
    consent_text: str | None = Field(default=None, max_length=5000)
    consent_text_version: str | None = Field(default=None, max_length=40)
    non_face_alternative: str | None = Field(default=None, max_length=2000)
    embed_origins: (
        list[Annotated[str, Field(max_length=200, pattern=r"^https?://[^\s/?#@*]+$")]] | None
    ) = Field(
        default=None,
        max_length=20,
        description="origins (scheme://host[:port], https except on loopback) whose pages may "
        "frame the capture page and receive its outcome (docs/embedding.md); [] (the default): "
        "none. Audited",
        examples=[["https://app.example"]],
    )
