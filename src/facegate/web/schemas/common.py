"""The base of every response model, and the RFC 9457 problem body."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Out(BaseModel):
    """Base of the response models. They describe the JSON the service returns; they must never
    drop a key it adds (clients rely on every key), so unknown keys pass through (``extra``),
    and the routers serialise with ``exclude_unset`` so an optional field the service did not
    send is not invented as ``null``."""

    model_config = ConfigDict(extra="allow")


class Problem(Out):
    """RFC 9457 problem details (``application/problem+json``). Besides these fields a problem
    may carry measured values: quality checks, ``duplicates``, ``retry_after_s``, ``fields`` of a
    malformed request, ``current_version`` of the consent text, ``non_face_alternative``."""

    type: str = Field(examples=["urn:facegate:problem:consent_required"])
    title: str
    status: int
    detail: str
    code: str = Field(description="stable, machine-readable; the type's last part")
