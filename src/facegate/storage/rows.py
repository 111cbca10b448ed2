"""The rows the service reads, as typed values (the ``Store`` protocol is in storage/base.py,
which re-exports them). Rows hold ciphertexts of (transformed) templates only: never an image or
a plain embedding."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple


@dataclass(frozen=True)
class TenantRow:
    id: str
    name: str
    created_at: float
    kek_version: int
    wrapped_dek: bytes = field(repr=False)
    sealed_transform_seed: bytes = field(repr=False)
    transform_version: int
    settings: dict[str, Any]
    dek_version: int = 1  # the version of the data key wrapped_dek's first key is


@dataclass(frozen=True)
class ApiKeyRow:
    id: str
    tenant_id: str
    secret_hash: str = field(repr=False)
    roles: frozenset[str]
    label: str
    revoked: bool


@dataclass(frozen=True)
class SubjectRow:
    tenant_id: str
    id: str
    external_ref: str | None
    created_at: float
    last_activity_at: float
    erased_at: float | None

    @property
    def erased(self) -> bool:
        return self.erased_at is not None


@dataclass(frozen=True)
class ConsentRow:
    id: str
    tenant_id: str
    subject_id: str
    purpose: str
    text_version: str
    method: str
    granted_at: float
    withdrawn_at: float | None


@dataclass(frozen=True)
class TemplateRow:
    seq: int
    id: str
    tenant_id: str
    subject_id: str
    space_id: str
    transform_version: int
    sealed_vector: bytes = field(repr=False)
    source: str
    created_at: float
    dek_version: int | None = None  # the data key that sealed it (None: unknown, re-sealed)


@dataclass(frozen=True)
class QuarantinedTemplate:
    """A template whose sealed bytes did not open: named by its row, never blamed on a key."""

    tenant_id: str
    subject_id: str
    template_id: str
    quarantined_at: float


@dataclass(frozen=True)
class LivenessSessionRow:
    """A liveness check's outcome, spent by one enrolment or verification."""

    tenant_id: str
    id: str
    live: bool
    space_id: str | None
    sealed_vector: bytes | None = field(repr=False)
    summary: dict[str, Any]
    expires_at: float
    used_at: float | None
    subject_id: str | None = None
    purpose: str | None = None


@dataclass(frozen=True)
class CaptureLinkRow:
    """A capture link's state; its token is never stored (only its id)."""

    tenant_id: str
    id: str
    subject_id: str
    flow: str
    key_id: str
    created_at: float
    expires_at: float
    used_at: float | None = None
    revoked_at: float | None = None
    key_revoked: bool = False
    outcome: str | None = None  # passed, failed, declined
    outcome_at: float | None = None
    result: dict[str, Any] | None = None  # live, match, reason codes: no biometric data


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: float
    tenant_id: str | None
    actor: str
    action: str
    subject_id: str | None
    outcome: str
    details: dict[str, Any]
    prev_hash: str
    hash: str
    key_version: int | None = None  # the master-key version whose chain key keyed ``hash``

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AttemptPolicy:
    """The lockout: ``max_failures`` counted failures within ``window_s`` lock the subject for
    ``lock_s`` from the last of them."""

    max_failures: int
    window_s: float
    lock_s: float


@dataclass(frozen=True)
class LockState:
    locked_until: float | None
    lockouts: int


class TemplateLogEntry(NamedTuple):
    """One insert or delete of a template; in-process indexes catch up by replaying these."""

    seq: int
    tenant_id: str
    template_id: str
    op: str  # "add" or "remove"
