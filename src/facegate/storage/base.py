"""The storage interface the service needs. ``SQLiteStore`` is the embedded default; other
backends (PostgreSQL) implement the same methods with the same transactional meaning."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from facegate.storage.sql import ApiKeyRow, TemplateRow, TenantRow


class Store(Protocol):
    """Every method touches one tenant's rows only (the tenant id is always an argument),
    and ``tx()`` groups several calls into one atomic transaction."""

    def active_consent(
        self, tenant_id: str, subject_id: str, purpose: str
    ) -> dict[str, Any] | None: ...

    def add_api_key(self, tenant_id: str, roles: frozenset[str], label: str, now: float) -> str: ...

    def add_consent(
        self,
        tenant_id: str,
        subject_id: str,
        purpose: str,
        text_version: str,
        method: str,
        now: float,
    ) -> str: ...

    def add_liveness_session(
        self,
        tenant_id: str,
        session_id: str,
        live: bool,
        space_id: str | None,
        sealed_vector: bytes | None,
        summary: dict[str, Any],
        expires_at: float,
    ) -> None: ...

    def add_subject(
        self, tenant_id: str, subject_id: str, external_ref: str | None, now: float
    ) -> None: ...

    def add_template(self, row: TemplateRow) -> None: ...

    def add_tenant(self, row: TenantRow) -> None: ...

    def add_verify_failure(self, tenant_id: str, subject_id: str, now: float) -> None: ...

    def all_templates(self, tenant_id: str | None = None) -> list[TemplateRow]: ...

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
    ) -> None: ...

    def audit_records(
        self, tenant_id: str | None = None, subject_id: str | None = None
    ) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...

    def consents(self, tenant_id: str, subject_id: str) -> list[dict[str, Any]]: ...

    def delete_templates(
        self, tenant_id: str, subject_id: str, template_id: str | None = None
    ) -> list[str]: ...

    def expired_subjects(self, tenant_id: str, before: float) -> list[str]: ...

    def get_api_key(self, key_id: str) -> ApiKeyRow | None: ...

    def get_subject(self, tenant_id: str, subject_id: str) -> dict[str, Any] | None: ...

    def get_template(self, template_id: str) -> TemplateRow | None: ...

    def get_tenant(self, tenant_id: str) -> TenantRow | None: ...

    def last_log_seq(self) -> int: ...

    def list_tenants(self) -> list[TenantRow]: ...

    def mark_subject_erased(self, tenant_id: str, subject_id: str, now: float) -> None: ...

    def replace_template_vector(
        self, template_id: str, sealed_vector: bytes, transform_version: int
    ) -> None: ...

    def revoke_api_key(self, tenant_id: str, key_id: str, now: float) -> bool: ...

    def spend_challenge(
        self, tenant_id: str, challenge_id: str, expires_at: float, now: float
    ) -> bool: ...

    def take_liveness_session(
        self, tenant_id: str, session_id: str, now: float
    ) -> dict[str, Any] | None: ...

    def template_log_since(self, seq: int) -> list[tuple[int, str, str, str]]: ...

    def templates_of(self, tenant_id: str, subject_id: str) -> list[TemplateRow]: ...

    def tenant_by_name(self, name: str) -> TenantRow | None: ...

    def touch_subject(self, tenant_id: str, subject_id: str, now: float) -> None: ...

    def tx(self) -> AbstractContextManager[Any]: ...

    def update_tenant_keys(
        self,
        tenant_id: str,
        *,
        kek_version: int,
        wrapped_dek: bytes,
        sealed_transform_seed: bytes | None = None,
        transform_version: int | None = None,
    ) -> None: ...

    def update_tenant_settings(self, tenant_id: str, settings: dict[str, Any]) -> None: ...

    def verify_failures_since(
        self, tenant_id: str, subject_id: str, since: float
    ) -> list[float]: ...

    def withdraw_consents(
        self, tenant_id: str, subject_id: str, now: float, consent_id: str | None = None
    ) -> int: ...
