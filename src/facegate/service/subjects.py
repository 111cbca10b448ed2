"""Subjects and their consent: creation, consent records, withdrawal, erasure and export.

Withdrawing consent or erasing a subject removes its templates at once; the audit trail stays.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from facegate.errors import EvidenceError, ProtectionError
from facegate.protection.audit_keys import open_details
from facegate.protection.tenant import TenantSecrets
from facegate.service.context import Caller, ServiceContext
from facegate.service.policy import CONSENT_PURPOSE
from facegate.storage.base import AuditRecord, ConsentRow

# Audit details that name other subjects (which faces matched this one): a data-subject export
# holds nothing about anyone else.
OTHER_SUBJECTS = frozenset({"duplicates"})


def consent_view(c: ConsentRow | None) -> dict[str, Any]:
    if c is None:
        return dict.fromkeys(
            ("id", "purpose", "text_version", "method", "granted_at", "withdrawn_at")
        )
    return {
        "id": c.id,
        "purpose": c.purpose,
        "text_version": c.text_version,
        "method": c.method,
        "granted_at": c.granted_at,
        "withdrawn_at": c.withdrawn_at,
    }


def opened_details(keys: list[TenantSecrets], r: AuditRecord) -> dict[str, Any]:
    """A record's details with its sealed part opened (the tenant's own export only), under the
    current data key or one retired by a renewal (AES-GCM tells which one sealed it); a part
    that opens under none of them (damaged) stays marked as unreadable."""
    details = dict(r.details)
    sealed = details.pop("sealed", None)
    if isinstance(sealed, str):
        for k in keys:
            try:
                details.update(open_details(k, r.subject_id, r.action, sealed))
                break
            except ProtectionError:
                continue
        else:
            details["sealed"] = "unreadable"
    return details


class Subjects:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def create(
        self, caller: Caller, subject_id: str | None, external_ref: str | None
    ) -> dict[str, Any]:
        subject_id = subject_id or "s_" + secrets.token_hex(8)
        self.ctx.store.add_subject(caller.tenant_id, subject_id, external_ref, time.time())
        self.ctx.audit(caller, "subject.create", "ok", subject_id=subject_id)
        return self.view(caller, subject_id)

    def view(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        row = self.ctx.subject(caller, subject_id)
        store = self.ctx.store
        templates = store.templates_of(caller.tenant_id, subject_id)
        consent = store.active_consent(caller.tenant_id, subject_id, CONSENT_PURPOSE)
        lock = store.lock_state(caller.tenant_id, subject_id)
        return {
            "subject_id": subject_id,
            "external_ref": row.external_ref,
            "created_at": row.created_at,
            "last_activity_at": row.last_activity_at,
            "templates": len(templates),
            "consent": consent_view(consent) if consent else None,
            "lock": {"locked_until": lock.locked_until, "lockouts": lock.lockouts},
        }

    def grant_consent(
        self, caller: Caller, subject_id: str, purpose: str, text_version: str, method: str
    ) -> dict[str, Any]:
        ctx = self.ctx
        ctx.subject(caller, subject_id)
        current = ctx.tenant(caller.tenant_id).settings["consent_text_version"]
        if text_version != current:
            raise EvidenceError(
                "consent was given to another version of the consent text",
                code="consent_text_outdated",
                current_version=current,
            )
        consent_id = ctx.store.add_consent(
            caller.tenant_id, subject_id, purpose, text_version, method, time.time()
        )
        ctx.audit(
            caller,
            "consent.grant",
            "ok",
            subject_id=subject_id,
            details={
                "consent_id": consent_id,
                "purpose": purpose,
                "method": method,
                "text_version": text_version,
            },
        )
        return consent_view(ctx.store.active_consent(caller.tenant_id, subject_id, purpose))

    def withdraw_consent(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        """Withdrawal erases the subject's templates at once; the audit trail stays."""
        ctx = self.ctx
        ctx.subject(caller, subject_id)
        with ctx.store.tx():
            withdrawn = ctx.store.withdraw_consents(caller.tenant_id, subject_id, time.time())
            removed = ctx.store.delete_templates(caller.tenant_id, subject_id)
            ctx.audit(
                caller,
                "consent.withdraw",
                "ok",
                subject_id=subject_id,
                details={"consents_withdrawn": withdrawn, "templates_erased": len(removed)},
            )
        ctx.store.purge_deleted()  # no copy of the erased rows left in the database files
        ctx.gallery.sync()  # the template log carries the removals
        return {"consents_withdrawn": withdrawn, "templates_erased": len(removed)}

    def erase(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        ctx = self.ctx
        ctx.subject(caller, subject_id)
        now = time.time()
        with ctx.store.tx():
            removed = ctx.store.delete_templates(caller.tenant_id, subject_id)
            ctx.store.withdraw_consents(caller.tenant_id, subject_id, now)
            ctx.store.mark_subject_erased(caller.tenant_id, subject_id, now)
            ctx.audit(
                caller,
                "subject.erase",
                "ok",
                subject_id=subject_id,
                details={"templates_erased": len(removed)},
            )
        ctx.store.purge_deleted()  # no copy of the erased rows left in the database files
        ctx.gallery.sync()  # the template log carries the removals
        return {"subject_id": subject_id, "erased": True, "templates_erased": len(removed)}

    def export(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        """Everything stored about a subject except biometric data (templates are counted only)."""
        ctx = self.ctx
        view = self.view(caller, subject_id)
        templates = ctx.store.templates_of(caller.tenant_id, subject_id)
        keys = ctx.audit_detail_keys(ctx.tenant(caller.tenant_id))
        out = {
            **view,
            "consents": [consent_view(c) for c in ctx.store.consents(caller.tenant_id, subject_id)],
            "templates": [
                {
                    "template_id": t.id,
                    "created_at": t.created_at,
                    "source": t.source,
                    "embedding_space": t.space_id,
                    "biometric_data": "withheld (protected template)",
                }
                for t in templates
            ],
            "audit": [
                {
                    "seq": r.seq,
                    "at": r.at,
                    "actor": r.actor,
                    "action": r.action,
                    "outcome": r.outcome,
                    "details": {
                        k: v for k, v in opened_details(keys, r).items() if k not in OTHER_SUBJECTS
                    },
                }
                for r in ctx.store.audit_records(caller.tenant_id, subject_id)
            ],
        }
        ctx.audit(caller, "subject.export", "ok", subject_id=subject_id)
        return out
