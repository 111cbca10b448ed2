"""The storage contract: the rows the service reads, as typed values (storage/rows.py,
re-exported here), and the ``Store`` protocol listing every method the service calls.
``SQLiteStore`` (the embedded default) and ``PostgresStore`` implement it with the same
transactional meaning.

Rows hold ciphertexts of (transformed) templates only: never an image or a plain embedding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from facegate.storage.rows import (
    ApiKeyRow,
    AttemptPolicy,
    AuditRecord,
    CaptureLinkRow,
    ConsentRow,
    LivenessSessionRow,
    LockState,
    QuarantinedTemplate,
    SubjectRow,
    TemplateLogEntry,
    TemplateRow,
    TenantRow,
)

if TYPE_CHECKING:
    from facegate.storage.tenant_keys import SealedRow
    from facegate.storage.webhooks import DeliveryRow, ExpiredLink, WebhookRow

__all__ = [
    "ApiKeyRow",
    "AttemptPolicy",
    "AuditRecord",
    "CaptureLinkRow",
    "ConsentRow",
    "LivenessSessionRow",
    "LockState",
    "QuarantinedTemplate",
    "Store",
    "SubjectRow",
    "TemplateLogEntry",
    "TemplateRow",
    "TenantRow",
    "VectorStore",
]


class Store(Protocol):
    """Every method touches one tenant's rows only (the tenant id is always an argument, except
    for operator tasks over all tenants), and ``tx()`` groups calls into one atomic transaction."""

    audit_anchor: Any  # told of every audit append (storage/audit_anchor.py), or None

    # transactions and locks
    def tx(self) -> AbstractContextManager[Any]: ...

    def lock_tenant(self, tenant_id: str) -> None: ...

    def close(self) -> None: ...

    # tenants and keys
    def add_tenant(self, row: TenantRow) -> None: ...

    def get_tenant(self, tenant_id: str) -> TenantRow | None: ...

    def tenant_by_name(self, name: str) -> TenantRow | None: ...

    def list_tenants(self) -> list[TenantRow]: ...

    def update_tenant_settings(self, tenant_id: str, settings: dict[str, Any]) -> None: ...

    def update_tenant_keys(
        self,
        tenant_id: str,
        *,
        kek_version: int,
        wrapped_dek: bytes,
        sealed_transform_seed: bytes | None = None,
        transform_version: int | None = None,
    ) -> None: ...

    # data keys replaced by a renewal, kept only to open older audit details (tenant_keys.py)
    def retire_tenant_key(
        self, tenant_id: str, version: int, kek_version: int, wrapped_dek: bytes, now: float
    ) -> None: ...

    def retired_tenant_keys(self, tenant_id: str | None = None) -> list[Any]: ...

    def rewrap_retired_key(
        self, tenant_id: str, version: int, kek_version: int, wrapped_dek: bytes
    ) -> None: ...

    def audit_key_versions(self) -> set[int]: ...

    # data-key versions and the rows sealed under each (tenant_keys.py; keys rotate-data-key)

    def set_data_key_version(self, tenant_id: str, version: int) -> None: ...

    def rows_to_reseal(
        self, kind: str, tenant_id: str, below: int, after_id: str, limit: int
    ) -> list[SealedRow]: ...

    def reseal_row(
        self, kind: str, tenant_id: str, row_id: str, old: bytes, new: bytes, version: int
    ) -> bool: ...

    def delete_sealed_row(self, kind: str, tenant_id: str, row_id: str, old: bytes) -> bool: ...

    def rows_below_data_key(self, tenant_id: str, below: int) -> dict[str, int]: ...

    def add_api_key(self, tenant_id: str, roles: frozenset[str], label: str, now: float) -> str: ...

    def get_api_key(self, key_id: str) -> ApiKeyRow | None: ...

    def revoke_api_key(self, tenant_id: str, key_id: str, now: float) -> bool: ...

    # subjects and consents
    def add_subject(
        self, tenant_id: str, subject_id: str, external_ref: str | None, now: float
    ) -> None: ...

    def get_subject(self, tenant_id: str, subject_id: str) -> SubjectRow | None: ...

    def touch_subject(self, tenant_id: str, subject_id: str, now: float) -> None: ...

    def mark_subject_erased(self, tenant_id: str, subject_id: str, now: float) -> None: ...

    def expired_subjects(self, tenant_id: str, before: float) -> list[str]: ...

    def add_consent(
        self,
        tenant_id: str,
        subject_id: str,
        purpose: str,
        text_version: str,
        method: str,
        now: float,
    ) -> str: ...

    def consents(self, tenant_id: str, subject_id: str) -> list[ConsentRow]: ...

    def active_consent(
        self, tenant_id: str, subject_id: str, purpose: str
    ) -> ConsentRow | None: ...

    def withdraw_consents(
        self, tenant_id: str, subject_id: str, now: float, consent_id: str | None = None
    ) -> int: ...

    # templates and their log
    def add_template(self, row: TemplateRow) -> None: ...

    def get_template(self, template_id: str) -> TemplateRow | None: ...

    def templates_of(self, tenant_id: str, subject_id: str) -> list[TemplateRow]: ...

    def all_templates(self, tenant_id: str | None = None) -> list[TemplateRow]: ...

    def delete_templates(
        self, tenant_id: str, subject_id: str, template_id: str | None = None
    ) -> list[str]: ...

    def replace_template_vector(
        self, template_id: str, sealed_vector: bytes, transform_version: int, dek_version: int
    ) -> None: ...

    def template_log_since(self, seq: int) -> list[TemplateLogEntry]: ...

    def quarantine_template(self, template_id: str, now: float) -> bool: ...

    def quarantined_templates(self, tenant_id: str | None = None) -> list[QuarantinedTemplate]: ...

    def last_log_seq(self) -> int: ...

    # liveness and lockout
    def spend_challenge(
        self, tenant_id: str, challenge_id: str, expires_at: float, now: float
    ) -> bool: ...

    def add_liveness_session(
        self,
        tenant_id: str,
        session_id: str,
        live: bool,
        space_id: str | None,
        sealed_vector: bytes | None,
        summary: dict[str, Any],
        expires_at: float,
        subject_id: str | None = None,
        purpose: str | None = None,
        dek_version: int | None = None,
    ) -> None: ...

    def take_liveness_session(
        self,
        tenant_id: str,
        session_id: str,
        subject_id: str,
        purposes: tuple[str, ...],
        now: float,
    ) -> LivenessSessionRow | None: ...

    def add_capture_link(self, row: CaptureLinkRow) -> None: ...

    def get_capture_link(self, tenant_id: str, link_id: str) -> CaptureLinkRow | None: ...

    def spend_capture_link(self, tenant_id: str, link_id: str, now: float) -> bool: ...

    def revoke_capture_link(self, tenant_id: str, link_id: str, now: float) -> bool: ...

    def claim_idempotency_key(
        self, tenant_id: str, key_hash: str, request_hash: str, now: float
    ) -> Any: ...

    def finish_idempotency_key(
        self, tenant_id: str, key_hash: str, status: int, sealed_answer: bytes
    ) -> None: ...

    def release_idempotency_key(self, tenant_id: str, key_hash: str) -> None: ...

    def record_capture_outcome(
        self, tenant_id: str, link_id: str, outcome: str, result: dict[str, Any], now: float
    ) -> None: ...

    # webhooks: each tenant's sealed endpoint and the outbox of events (webhooks.py)
    def get_webhook(self, tenant_id: str) -> WebhookRow | None: ...

    def put_webhook(self, row: WebhookRow) -> None: ...

    def delete_webhook(self, tenant_id: str) -> bool: ...

    def add_webhook_delivery(
        self,
        tenant_id: str,
        event_id: str,
        event_type: str,
        payload: str,
        now: float,
        event_key: str | None = None,
    ) -> bool: ...

    def claim_webhook_deliveries(
        self,
        now: float,
        lease_s: float,
        limit: int,
        *,
        max_attempts: int,
        retry_after: Callable[[int], float],
        per_tenant: int | None = None,
        busy: Mapping[str, int] | None = None,
        after_tenant: str = "",
    ) -> list[DeliveryRow]: ...

    def finish_webhook_attempt(
        self,
        row: DeliveryRow,
        *,
        status: str,
        next_attempt_at: float,
        status_code: int | None,
        error: str | None,
        now: float,
    ) -> bool: ...

    def webhook_deliveries(
        self, tenant_id: str, limit: int, status: str | None = None
    ) -> list[DeliveryRow]: ...

    def get_webhook_delivery(self, tenant_id: str, event_id: str) -> DeliveryRow | None: ...

    def redeliver_webhook(
        self, tenant_id: str, event_id: str, now: float, *, min_gap_s: float, max_pending: int
    ) -> tuple[str, float]: ...

    def prune_webhook_deliveries(self, before: float) -> int: ...

    def unannounced_expired_links(self, before: float, limit: int) -> list[ExpiredLink]: ...

    def mark_expiry_announced(self, tenant_id: str, link_id: str, now: float) -> bool: ...

    # attempts and locks (attempts.py)
    def begin_attempt(
        self,
        tenant_id: str,
        subject_id: str,
        attempt_id: str,
        kind: str,
        now: float,
        policy: AttemptPolicy,
    ) -> tuple[float, bool]: ...

    def settle_attempt(
        self,
        tenant_id: str,
        subject_id: str,
        attempt_id: str,
        succeeded: bool,
        now: float,
        policy: AttemptPolicy,
    ) -> bool: ...

    def clear_lock(self, tenant_id: str, subject_id: str) -> None: ...

    def lock_state(self, tenant_id: str, subject_id: str) -> LockState: ...

    # audit
    def append_audit(
        self,
        *,
        at: float,
        tenant_id: str | None,
        actor: str,
        action: str,
        subject_id: str | None,
        outcome: str,
        details: dict[str, Any],
        audit_key: Any,
    ) -> None: ...

    def audit_records(
        self, tenant_id: str | None = None, subject_id: str | None = None
    ) -> list[AuditRecord]: ...

    def audit_records_since(self, seq: int) -> list[AuditRecord]: ...

    def audit_head(self) -> Any: ...

    # erasure: make deleted rows unrecoverable from the database files (SQLite: secure_delete
    # is on, then the WAL is checkpointed and truncated)
    def purge_deleted(self) -> None: ...


class VectorStore(Store, Protocol):
    """A database that indexes the transformed vectors itself (PostgreSQL + pgvector)."""

    def set_protected_vector(self, template_id: str, vector: Any) -> None: ...

    def search_protected(
        self, tenant_id: str, space_id: str, vector: Any, k: int
    ) -> list[tuple[str, str, float]]: ...

    def count_protected(self, tenant_id: str, space_id: str) -> int: ...
