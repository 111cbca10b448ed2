"""Verification (1:1 against a subject's templates, with the lockout) and search (1:N over the
tenant's gallery, and duplicate clusters)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import numpy as np

from facegate.engine.compare import load_calibration
from facegate.errors import ConflictError, EvidenceError, FacegateError, ForbiddenError
from facegate.service.attempts import Attempts
from facegate.service.context import Caller, Probe, ServiceContext
from facegate.service.gallery import best_per_subject, open_template
from facegate.storage.base import TenantRow
from facegate.types import Embedding


def best_score(
    ctx: ServiceContext, tenant: TenantRow, subject_id: str, probe: Probe
) -> float | None:
    """The probe's best cosine score against the subject's templates of its embedding space
    (None when there are none that open). Both sides are in the tenant's transformed space."""
    templates = [
        t for t in ctx.store.templates_of(tenant.id, subject_id) if t.space_id == probe.space_id
    ]
    secrets_ = ctx.secrets_of(tenant)
    protected = secrets_.protect(probe.embedding)
    vectors = [
        v
        for t in templates
        if (v := open_template(ctx.store, secrets_, t, ctx.quarantined)) is not None
    ]
    if not vectors:
        return None
    return max(float(np.dot(protected, v)) for v in vectors)


class Matching:
    def __init__(self, ctx: ServiceContext, attempts: Attempts) -> None:
        self.ctx = ctx
        self.attempts = attempts
        # Enrols a template in the current embedding space after a match in an older one
        # (set by the facade to Enrolment.enroll; None leaves older templates as they are).
        self.migrate: Callable[[Caller, str, Probe], object] | None = None

    def _score_in_older_space(
        self, tenant: TenantRow, subject_id: str, probe: Probe
    ) -> tuple[str, float, float, float] | None:
        """After a change of embedder, a subject may have templates only in an older space.
        Where the current embedder's result contains that space's embedding (the fused
        embedder holds MobileFaceNet's), the probe is scored there at the same operating point:
        (space, score, threshold, FMR target). None when no older template can be scored."""
        ctx = self.ctx
        parts = ctx.engine.embeddings_by_space(Embedding(probe.embedding, probe.space_id))
        spaces = {t.space_id for t in ctx.store.templates_of(tenant.id, subject_id)}
        for space in sorted(spaces & set(parts) - {probe.space_id}):
            part = Probe(parts[space].vector, space, probe.liveness, probe.quality)
            score = best_score(ctx, tenant, subject_id, part)
            if score is None:
                continue
            point = load_calibration(space)["operating_points"][tenant.settings["operating_point"]]
            return space, score, float(point["threshold"]), float(point["fmr_target"])
        return None

    def _no_template_here(self, tenant: TenantRow, subject_id: str) -> None:
        """Never a silent ``not_enrolled`` for a subject whose templates are in another space."""
        ctx = self.ctx
        spaces = sorted({t.space_id for t in ctx.store.templates_of(tenant.id, subject_id)})
        if spaces:
            raise ConflictError(
                "the subject's templates were made by another face model: enrol again",
                code="re_enrolment_required",
                template_spaces=spaces,
                current_space=ctx.space_id,
            )
        raise ConflictError("the subject has no enrolled face", code="not_enrolled")

    def verify(self, caller: Caller, subject_id: str, probe: Probe) -> dict[str, Any]:
        """1:1 with the lockout: the attempt is admitted (or refused, 423) before anything is
        scored, and a miss is counted before the answer leaves."""
        ctx = self.ctx
        ctx.subject(caller, subject_id)
        ctx.require_consent(caller, subject_id)
        tenant = ctx.tenant(caller.tenant_id)
        s = tenant.settings
        live = bool(probe.liveness.get("live"))
        may_clear = live and bool(s.get("live_match_clears_lock"))
        if may_clear and self.attempts.locked_for(tenant, subject_id) > 0:
            attempt = None  # scored despite the lock: only a live genuine match lifts it
        else:
            attempt = self.attempts.begin(caller, tenant, subject_id, "pending", "verify")
        if s.get("require_liveness") and not live:
            if attempt:
                self.attempts.settle(caller, tenant, subject_id, attempt, ok=False)
            ctx.audit(caller, "verify", "liveness_required", subject_id=subject_id)
            raise ForbiddenError(
                "this tenant verifies only with a passed liveness check", code="liveness_required"
            )
        score = best_score(ctx, tenant, subject_id, probe)
        threshold, fmr = ctx.threshold(s["operating_point"])
        migrated_from = None
        if score is None:
            legacy = self._score_in_older_space(tenant, subject_id, probe)
            if legacy is None:
                if attempt:
                    self.attempts.settle(caller, tenant, subject_id, attempt, ok=True)
                self._no_template_here(tenant, subject_id)
            assert legacy is not None
            migrated_from, score, threshold, fmr = legacy
        match = score >= threshold
        if match:
            ctx.store.touch_subject(tenant.id, subject_id, ctx.now())
            if attempt:
                self.attempts.settle(caller, tenant, subject_id, attempt, ok=True)
            else:
                self.attempts.clear(caller, tenant, subject_id)
        else:
            missed = attempt or "at_" + secrets.token_hex(12)  # a lock-bypassing miss counts too
            self.attempts.settle(caller, tenant, subject_id, missed, ok=False)
        ctx.audit(
            caller,
            "verify",
            "match" if match else "no_match",
            subject_id=subject_id,
            details={
                "score": round(score, 4),
                "operating_point": s["operating_point"],
                "liveness": live,
            },
        )
        if match and migrated_from is not None and self.migrate is not None:
            details = {"from_space": migrated_from, "to_space": probe.space_id}
            try:
                self.migrate(caller, subject_id, probe)
            except FacegateError as exc:  # the match stands; the new template waits
                ctx.audit(
                    caller, "template.migrated", exc.code, subject_id=subject_id, details=details
                )
            else:
                ctx.audit(caller, "template.migrated", "ok", subject_id=subject_id, details=details)
        reveal = match or bool(s.get("reveal_scores"))
        extra = {"migrated_from": migrated_from} if migrated_from else {}
        return {
            **extra,
            "subject_id": subject_id,
            "match": match,
            "score": round(score, 6) if reveal else None,
            "threshold": round(threshold, 6),
            "operating_point": s["operating_point"],
            "fmr_target": fmr,
            "liveness": probe.liveness,
            "quality": probe.quality,
        }

    def search(self, caller: Caller, subject_id: str, probe: Probe, k: int) -> dict[str, Any]:
        """1:N: the probe belongs to a consenting subject; returns other subjects above the
        duplicate threshold."""
        ctx = self.ctx
        ctx.subject(caller, subject_id)
        ctx.require_consent(caller, subject_id)
        tenant = ctx.tenant(caller.tenant_id)
        if not probe.liveness.get("session_id"):
            self._probe_is_subject(caller, tenant, subject_id, probe)
        threshold, fmr = ctx.threshold(tenant.settings["duplicate_operating_point"])
        ctx.gallery.sync()
        protected = ctx.secrets_of(tenant).protect(probe.embedding)
        hits = [
            h
            for h in ctx.gallery.search(
                tenant.id, probe.space_id, protected, k=max(k * 3, 10), min_score=threshold
            )
            if h.subject_id != subject_id
        ]
        candidates = best_per_subject(hits)[:k]
        ctx.audit(
            caller,
            "search",
            "hits" if candidates else "no_hits",
            subject_id=subject_id,
            details={"candidates": len(candidates)},
        )
        return {
            "probe_subject_id": subject_id,
            "candidates": candidates,
            "threshold": round(threshold, 6),
            "operating_point": tenant.settings["duplicate_operating_point"],
            "fmr_target": fmr,
            "gallery_size": ctx.gallery.size(tenant.id, probe.space_id),
        }

    def _probe_is_subject(
        self, caller: Caller, tenant: TenantRow, subject_id: str, probe: Probe
    ) -> None:
        """A probe that is not the named subject's own liveness session must match that
        subject's template 1:1 first: otherwise any photo could be identified under the name
        of any consenting subject. A miss counts as a failed attempt."""
        attempt = self.attempts.begin(caller, tenant, subject_id, "pending", "search")
        score = best_score(self.ctx, tenant, subject_id, probe)
        threshold, _ = self.ctx.threshold(tenant.settings["operating_point"])
        ok = score is not None and score >= threshold
        self.attempts.settle(caller, tenant, subject_id, attempt, ok=ok)
        if not ok:
            self.ctx.audit(caller, "search", "probe_not_subject", subject_id=subject_id)
            raise EvidenceError(
                "the probe is not the named subject's face: send the subject's liveness session"
                " or a photo that matches the subject's enrolled face",
                code="probe_not_subject",
            )

    def duplicates(self, caller: Caller) -> dict[str, Any]:
        """Clusters of subjects that share a face (connected components above the threshold)."""
        ctx = self.ctx
        tenant = ctx.tenant(caller.tenant_id)
        threshold, _ = ctx.threshold(tenant.settings["duplicate_operating_point"])
        ctx.gallery.sync()
        secrets_ = ctx.secrets_of(tenant)
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        best: dict[frozenset[str], float] = {}
        for t in ctx.store.all_templates(tenant.id):
            if t.space_id != ctx.space_id:
                continue
            v = open_template(ctx.store, secrets_, t, ctx.quarantined)
            if v is None:
                continue
            for h in ctx.gallery.search(tenant.id, t.space_id, v, k=20, min_score=threshold):
                if h.subject_id != t.subject_id:
                    parent[find(h.subject_id)] = find(t.subject_id)
                    pair = frozenset((h.subject_id, t.subject_id))
                    best[pair] = max(best.get(pair, -1.0), h.score)
        groups: dict[str, set[str]] = {}
        for x in list(parent):
            groups.setdefault(find(x), set()).add(x)
        clusters = [
            {
                "subjects": sorted(g),
                "pairs": [
                    {"subjects": sorted(p), "score": round(s, 4)} for p, s in best.items() if p <= g
                ],
            }
            for g in groups.values()
            if len(g) > 1
        ]
        ctx.audit(caller, "duplicates.list", "ok", details={"clusters": len(clusters)})
        return {
            "clusters": clusters,
            "threshold": round(threshold, 6),
            "operating_point": tenant.settings["duplicate_operating_point"],
        }
