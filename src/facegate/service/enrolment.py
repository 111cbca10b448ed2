"""Enrolment: a consenting subject's face becomes a protected template, after a duplicate search
over the tenant's gallery (a subject that has templates takes only the same face, or an admin's
audited override); and the ID-document variant that first matches the live face 1:1 with the
document photo (only the live template is kept)."""

from __future__ import annotations

import secrets
import time
from typing import Any

import numpy as np

from facegate.errors import ConflictError, EvidenceError, ForbiddenError
from facegate.protection.tenant import template_aad
from facegate.service.attempts import Attempts
from facegate.service.context import Caller, Probe, ServiceContext
from facegate.service.gallery import best_per_subject
from facegate.service.matching import best_score
from facegate.storage.base import TemplateRow, TenantRow


class Enrolment:
    def __init__(self, ctx: ServiceContext, attempts: Attempts) -> None:
        self.ctx = ctx
        self.attempts = attempts

    def require_liveness(self, tenant: TenantRow, probe: Probe) -> None:
        if tenant.settings.get("require_liveness") and not probe.liveness.get("live"):
            raise ForbiddenError(
                "this tenant enrols only from a passed liveness check", code="liveness_required"
            )

    def same_face_or_override(
        self, caller: Caller, tenant: TenantRow, subject_id: str, probe: Probe, override: bool
    ) -> bool:
        """A subject that already has templates takes only the same face (1:1 at the tenant's
        operating point), else an admin's audited override. True when overridden."""
        ctx = self.ctx
        if not any(
            t.space_id == probe.space_id for t in ctx.store.templates_of(tenant.id, subject_id)
        ):
            return False
        if override and "admin" not in caller.roles:
            raise ForbiddenError("only an admin key can override the re-enrolment check")
        attempt = self.attempts.begin(caller, tenant, subject_id, "pending", "enroll")
        score = best_score(ctx, tenant, subject_id, probe)
        threshold, _ = ctx.threshold(tenant.settings["operating_point"])
        same = score is not None and score >= threshold
        self.attempts.settle(caller, tenant, subject_id, attempt, ok=same or override)
        if same:
            return False
        if override:
            return True
        ctx.audit(caller, "enroll", "reenrol_mismatch", subject_id=subject_id)
        raise ConflictError(
            "the subject is enrolled with another face; an admin can override",
            code="reenrol_mismatch",
        )

    def enroll(
        self, caller: Caller, subject_id: str, probe: Probe, source: str, override: bool = False
    ) -> dict[str, Any]:
        ctx = self.ctx
        ctx.subject(caller, subject_id)
        ctx.require_consent(caller, subject_id)
        tenant = ctx.tenant(caller.tenant_id)
        self.require_liveness(tenant, probe)
        if probe.space_id != ctx.space_id:
            raise EvidenceError(
                "probe from another embedding space", code="embedding_space_mismatch"
            )
        overridden = self.same_face_or_override(caller, tenant, subject_id, probe, override)
        dup_threshold, dup_fmr = ctx.threshold(tenant.settings["duplicate_operating_point"])
        policy = tenant.settings["duplicate_policy"]
        template_id = "tp_" + secrets.token_hex(12)
        aad = template_aad(tenant.id, subject_id, template_id, probe.space_id)
        # Search and insert under one tenant lock, so that two workers enrolling the same face at
        # once cannot both miss each other: the second sees the first's template. The transform
        # is read under the lock too: a renewal (which takes it) cannot slip in between.
        with ctx.store.tx():
            ctx.store.lock_tenant(tenant.id)
            tenant = ctx.tenant(tenant.id)
            secrets_ = ctx.secrets_of(tenant)
            protected = secrets_.protect(probe.embedding)
            row = TemplateRow(
                0,
                template_id,
                tenant.id,
                subject_id,
                probe.space_id,
                tenant.transform_version,
                secrets_.seal_vector(protected, aad),
                source,
                time.time(),
                secrets_.dek_version,  # the key it is sealed under, read under the lock
            )
            ctx.gallery.sync()
            hits = ctx.gallery.search(
                tenant.id, probe.space_id, protected, k=20, min_score=dup_threshold
            )
            duplicates = best_per_subject([h for h in hits if h.subject_id != subject_id])
            rejected = bool(duplicates) and policy == "reject"
            if not rejected:
                ctx.store.add_template(row)
                ctx.gallery.store_vector(template_id, protected)
                ctx.store.touch_subject(tenant.id, subject_id, time.time())
                ctx.audit(
                    caller,
                    "enroll",
                    "override" if overridden else "flagged_duplicate" if duplicates else "ok",
                    subject_id=subject_id,
                    details={
                        "template_id": template_id,
                        "source": source,
                        "liveness": bool(probe.liveness.get("live")),
                        "override": overridden,
                        "duplicates": [d["subject_id"] for d in duplicates],
                    },
                )
        if rejected:
            ctx.audit(
                caller,
                "enroll",
                "rejected_duplicate",
                subject_id=subject_id,
                details={"duplicates": [d["subject_id"] for d in duplicates]},
            )
            raise ConflictError(
                "this face is already enrolled under another subject",
                code="duplicate_face",
                duplicates=duplicates,
            )
        ctx.gallery.sync()
        return {
            "subject_id": subject_id,
            "template_id": template_id,
            "source": source,
            "liveness": probe.liveness,
            "quality": probe.quality,
            "duplicates": duplicates,
            "duplicate_policy": policy,
            "duplicate_threshold": {
                "operating_point": tenant.settings["duplicate_operating_point"],
                "threshold": dup_threshold,
                "fmr_target": dup_fmr,
            },
        }

    def enroll_with_document(
        self, caller: Caller, subject_id: str, document: bytes, live: Probe
    ) -> dict[str, Any]:
        """Real-name check: the ID document's photo and the live capture must match 1:1; only the
        live capture's template is kept, never anything of the document."""
        ctx = self.ctx
        tenant = ctx.tenant(caller.tenant_id)
        ctx.subject(caller, subject_id)
        ctx.require_consent(caller, subject_id)
        self.require_liveness(tenant, live)  # before the document is even looked at
        doc = ctx.engine.analyse(document, multiple="largest")
        threshold, fmr = ctx.threshold(tenant.settings["operating_point"])
        score = float(np.dot(doc.embedding.vector, live.embedding))
        del doc
        if score < threshold:
            ctx.audit(
                caller,
                "enroll.id_document",
                "mismatch",
                subject_id=subject_id,
                details={"score": round(score, 4), "threshold": threshold},
            )
            raise EvidenceError(
                "the live face does not match the document photo",
                code="document_mismatch",
                score=round(score, 4),
                threshold=threshold,
            )
        out = self.enroll(caller, subject_id, live, "id_document_match")
        out["document_match"] = {
            "score": round(score, 4),
            "threshold": threshold,
            "fmr_target": fmr,
        }
        return out
