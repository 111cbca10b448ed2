"""FaceService: enrolment, verification, search, liveness, consent and erasure, with no HTTP.

Every operation takes the tenant id first and touches only that tenant's rows, so isolation is
structural. Face images and plain embeddings live only in local variables of these functions.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facegate.engine.compare import load_calibration
from facegate.engine.pipeline import FaceEngine
from facegate.errors import FacegateError
from facegate.liveness.challenge import Challenge, ChallengeError, ChallengePolicy, create_challenge
from facegate.liveness.challenge import sign as sign_challenge
from facegate.liveness.challenge import verify as verify_challenge
from facegate.liveness.check import LivenessChecker
from facegate.protection.crypto import KeyRing, ProtectionError, seal
from facegate.protection.tenant import (
    TenantSecrets,
    new_tenant_material,
    open_tenant,
    seed_aad,
    template_aad,
)
from facegate.protection.tokens import open_token, peek_token, sign_token
from facegate.protection.transform import retransform
from facegate.service.index import DatabaseIndex, GalleryIndex, Hit
from facegate.storage.base import Store
from facegate.storage.sql import TemplateRow, TenantRow, hash_secret
from facegate.storage.sqlite import SQLiteStore

log = logging.getLogger(__name__)

ROLES = frozenset({"enroll", "verify", "search", "admin"})
CONSENT_PURPOSE = "face_verification"
LIVENESS_SESSION_TTL_S = 300.0

DEFAULT_TENANT_SETTINGS: dict[str, Any] = {
    "operating_point": "fmr_1e-3",
    "duplicate_operating_point": "fmr_1e-4",
    "duplicate_policy": "flag",  # or "reject"
    "retention_days": 1095,  # BIPA's outer bound: three years after the last interaction
    "require_liveness": False,
    "consent_text_version": "1",
    "consent_text": (
        "We compare your face with the photo you enrol so that only you can use this account. "
        "We keep a protected mathematical template, never your photo, and delete it when you "
        "withdraw consent or after three years without use."
    ),
    "non_face_alternative": (
        "If you prefer not to use your face, verify with a one-time code sent to your registered "
        "phone, or visit a service desk with an identity document."
    ),
    "lockout_max_failures": 5,
    "lockout_window_s": 180,
    "lockout_duration_s": 1800,
}


class ServiceError(FacegateError):
    default_code = "service_error"


@dataclass
class Caller:
    tenant_id: str
    key_id: str
    roles: frozenset[str]

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}"


@dataclass
class Probe:
    embedding: np.ndarray = field(repr=False)
    space_id: str
    liveness: dict[str, Any]
    quality: dict[str, Any] | None = None


class FaceService:
    def __init__(
        self,
        store: Store,
        ring: KeyRing,
        engine: FaceEngine,
        checker: LivenessChecker | None = None,
        index: GalleryIndex | DatabaseIndex | None = None,
    ) -> None:
        self.store = store
        self.ring = ring
        self.engine = engine
        self.checker = checker
        self.index = index if index is not None else GalleryIndex("flat")
        self.calibration = load_calibration(engine.space_id)
        self.rebuild_index()

    # -- tenants, keys, auth ----------------------------------------------------------------

    def create_tenant(
        self, name: str, settings: dict[str, Any] | None = None
    ) -> tuple[TenantRow, str]:
        """A tenant with fresh key material, and its first admin key (returned once)."""
        tenant_id = "t_" + secrets.token_hex(8)
        kek_version, wrapped, sealed_seed = new_tenant_material(self.ring, tenant_id)
        row = TenantRow(
            tenant_id,
            name,
            time.time(),
            kek_version,
            wrapped,
            sealed_seed,
            1,
            {**DEFAULT_TENANT_SETTINGS, **(settings or {})},
        )
        self.store.add_tenant(row)
        key = self.store.add_api_key(tenant_id, frozenset(ROLES), "first admin key", time.time())
        self.audit(
            None,
            "tenant.create",
            "ok",
            tenant_id=tenant_id,
            actor="operator",
            details={"name": name},
        )
        return row, key

    def authenticate(self, token: str) -> Caller | None:
        """``fg_<id>_<secret>`` -> the caller, or None. Compares hashes in constant time."""
        parts = token.strip().split("_", 2)
        if len(parts) != 3 or parts[0] != "fg":
            return None
        row = self.store.get_api_key(parts[1])
        expected = row.secret_hash if row else hash_secret("dummy-for-equal-timing")
        if not hmac.compare_digest(expected, hash_secret(parts[2])) or row is None or row.revoked:
            return None
        return Caller(row.tenant_id, row.id, row.roles)

    def tenant(self, tenant_id: str) -> TenantRow:
        row = self.store.get_tenant(tenant_id)
        if row is None:
            raise ServiceError("unknown tenant", code="not_found")
        return row

    def secrets_of(self, tenant: TenantRow) -> TenantSecrets:
        return open_tenant(
            self.ring,
            tenant.id,
            tenant.kek_version,
            tenant.wrapped_dek,
            tenant.sealed_transform_seed,
            tenant.transform_version,
        )

    def threshold(self, name: str) -> tuple[float, float]:
        point = self.calibration["operating_points"].get(name)
        if point is None:
            raise ServiceError(f"unknown operating point {name}", code="bad_settings")
        return float(point["threshold"]), float(point["fmr_target"])

    def audit(
        self,
        caller: Caller | None,
        action: str,
        outcome: str,
        *,
        subject_id: str | None = None,
        tenant_id: str | None = None,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.store.append_audit(
            at=time.time(),
            tenant_id=tenant_id or (caller.tenant_id if caller else None),
            actor=actor or (caller.actor if caller else "system"),
            action=action,
            subject_id=subject_id,
            outcome=outcome,
            details=details or {},
        )

    # -- subjects and consent ---------------------------------------------------------------

    def create_subject(
        self, caller: Caller, subject_id: str | None, external_ref: str | None
    ) -> dict:
        subject_id = subject_id or "s_" + secrets.token_hex(8)
        self.store.add_subject(caller.tenant_id, subject_id, external_ref, time.time())
        self.audit(caller, "subject.create", "ok", subject_id=subject_id)
        return self.subject_view(caller, subject_id)

    def _subject(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        row = self.store.get_subject(caller.tenant_id, subject_id)
        if row is None or row["erased_at"] is not None:
            # another tenant's subject and a missing one look the same
            raise ServiceError("no such subject", code="not_found")
        return row

    def subject_view(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        row = self._subject(caller, subject_id)
        templates = self.store.templates_of(caller.tenant_id, subject_id)
        consent = self.store.active_consent(caller.tenant_id, subject_id, CONSENT_PURPOSE)
        return {
            "subject_id": subject_id,
            "external_ref": row["external_ref"],
            "created_at": row["created_at"],
            "last_activity_at": row["last_activity_at"],
            "templates": len(templates),
            "consent": _consent_view(consent) if consent else None,
        }

    def grant_consent(
        self, caller: Caller, subject_id: str, purpose: str, text_version: str, method: str
    ) -> dict[str, Any]:
        self._subject(caller, subject_id)
        tenant = self.tenant(caller.tenant_id)
        if text_version != tenant.settings["consent_text_version"]:
            raise ServiceError(
                "consent was given to another version of the consent text",
                code="consent_text_outdated",
                current_version=tenant.settings["consent_text_version"],
            )
        consent_id = self.store.add_consent(
            caller.tenant_id, subject_id, purpose, text_version, method, time.time()
        )
        self.audit(
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
        return _consent_view(self.store.active_consent(caller.tenant_id, subject_id, purpose) or {})

    def withdraw_consent(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        """Withdrawal erases the subject's templates at once; the audit trail stays."""
        self._subject(caller, subject_id)
        now = time.time()
        with self.store.tx():
            withdrawn = self.store.withdraw_consents(caller.tenant_id, subject_id, now)
            removed = self.store.delete_templates(caller.tenant_id, subject_id)
            self.audit(
                caller,
                "consent.withdraw",
                "ok",
                subject_id=subject_id,
                details={"consents_withdrawn": withdrawn, "templates_erased": len(removed)},
            )
        self.sync_index()  # the template log carries the removals
        return {"consents_withdrawn": withdrawn, "templates_erased": len(removed)}

    def require_consent(self, caller: Caller, subject_id: str) -> None:
        if self.store.active_consent(caller.tenant_id, subject_id, CONSENT_PURPOSE) is None:
            raise ServiceError(
                "no active consent for face verification is recorded for this subject",
                code="consent_required",
            )

    def erase_subject(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        self._subject(caller, subject_id)
        now = time.time()
        with self.store.tx():
            removed = self.store.delete_templates(caller.tenant_id, subject_id)
            self.store.withdraw_consents(caller.tenant_id, subject_id, now)
            self.store.mark_subject_erased(caller.tenant_id, subject_id, now)
            self.audit(
                caller,
                "subject.erase",
                "ok",
                subject_id=subject_id,
                details={"templates_erased": len(removed)},
            )
        self.sync_index()  # the template log carries the removals
        return {"subject_id": subject_id, "erased": True, "templates_erased": len(removed)}

    def export_subject(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        """Everything stored about a subject except biometric data (templates are counted only)."""
        view = self.subject_view(caller, subject_id)
        templates = self.store.templates_of(caller.tenant_id, subject_id)
        out = {
            **view,
            "consents": [
                _consent_view(c) for c in self.store.consents(caller.tenant_id, subject_id)
            ],
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
                {k: r[k] for k in ("seq", "at", "actor", "action", "outcome", "details")}
                for r in self.store.audit_records(caller.tenant_id, subject_id)
            ],
        }
        self.audit(caller, "subject.export", "ok", subject_id=subject_id)
        return out

    # -- probes -----------------------------------------------------------------------------

    def probe_from_image(self, image: bytes) -> Probe:
        result = self.engine.analyse(image)
        return Probe(
            result.embedding.vector,
            result.embedding.space_id,
            {"checked": False, "live": None},
            result.quality_dict(),
        )

    def probe_from_session(self, caller: Caller, session_id: str) -> Probe:
        session = self.store.take_liveness_session(caller.tenant_id, session_id, time.time())
        if session is None:
            raise ServiceError(
                "unknown, expired or already used liveness session", code="liveness_session_invalid"
            )
        if not session["live"] or session["sealed_vector"] is None:
            raise ServiceError(
                "the liveness session did not pass",
                code="not_live",
                reasons=session["summary"].get("reasons", []),
            )
        secrets_ = self.secrets_of(self.tenant(caller.tenant_id))
        vector = secrets_.open_vector(
            session["sealed_vector"], _session_aad(caller.tenant_id, session_id)
        )
        return Probe(
            vector, session["space_id"], {"checked": True, "live": True, "session_id": session_id}
        )

    # -- liveness ---------------------------------------------------------------------------

    def challenge_key(self, tenant: TenantRow) -> bytes:
        return self.secrets_of(tenant).derived_key("challenge")

    def new_challenge(
        self, caller: Caller, actions: tuple[str, ...] | None, flash: bool
    ) -> dict[str, Any]:
        tenant = self.tenant(caller.tenant_id)
        challenge = create_challenge(ChallengePolicy(flash=flash), now=time.time(), actions=actions)
        return {
            **challenge.payload(),
            "token": sign_challenge(challenge, self.challenge_key(tenant)),
        }

    def submit_liveness(
        self, caller: Caller, token: str, video: bytes, subject_id: str | None = None
    ) -> dict[str, Any]:
        if self.checker is None:
            raise ServiceError("liveness is not enabled on this server", code="liveness_disabled")
        tenant = self.tenant(caller.tenant_id)
        now = time.time()
        challenge: Challenge = verify_challenge(token, self.challenge_key(tenant), now=now)
        if subject_id is not None:
            self._subject(caller, subject_id)
            self.require_consent(caller, subject_id)
        if not self.store.spend_challenge(
            caller.tenant_id, challenge.id, challenge.expires_at, now
        ):
            raise ChallengeError("this challenge was already used", code="challenge_used")
        result = self.checker.check(video, challenge)
        verdict = result.to_dict()
        session_id = "ls_" + secrets.token_hex(12)
        sealed = None
        if result.verdict.live and result.best_embedding is not None:
            sealed = self.secrets_of(tenant).seal_vector(
                result.best_embedding, _session_aad(caller.tenant_id, session_id)
            )
        summary = {"reasons": verdict["reasons"], "challenge_id": challenge.id}
        self.store.add_liveness_session(
            caller.tenant_id,
            session_id,
            result.verdict.live,
            self.engine.space_id,
            sealed,
            summary,
            now + LIVENESS_SESSION_TTL_S,
        )
        self.audit(
            caller,
            "liveness.check",
            "live" if result.verdict.live else "not_live",
            subject_id=subject_id,
            details={
                "challenge_id": challenge.id,
                "reasons": [r["code"] for r in verdict["reasons"]],
            },
        )
        return {"session_id": session_id if result.verdict.live else None, **verdict}

    # -- capture links (the browser capture page) ---------------------------------------------

    def capture_key(self, tenant: TenantRow) -> bytes:
        return self.secrets_of(tenant).derived_key("capture")

    def new_capture_link(
        self, caller: Caller, subject_id: str, flow: str, ttl_s: float = 600.0
    ) -> dict[str, Any]:
        """A short-lived link for one subject and one flow, to hand to the person's browser
        instead of an API key."""
        if flow not in ("enroll", "verify"):
            raise ServiceError("flow must be enroll or verify", code="bad_request")
        if not caller.roles & {flow, "admin"}:
            raise ServiceError(f"this key cannot start a {flow} capture", code="forbidden")
        self._subject(caller, subject_id)
        tenant = self.tenant(caller.tenant_id)
        link_id = secrets.token_hex(12)
        expires = time.time() + ttl_s
        token = sign_token(
            self.capture_key(tenant),
            "facegate-capture",
            {
                "v": 1,
                "id": link_id,
                "tenant": tenant.id,
                "subject": subject_id,
                "flow": flow,
                "exp": expires,
            },
        )
        self.audit(
            caller,
            "capture.create",
            "ok",
            subject_id=subject_id,
            details={"capture_id": link_id, "flow": flow},
        )
        return {"capture_token": token, "url": f"/?t={token}", "flow": flow, "expires_at": expires}

    def open_capture(self, token: str) -> tuple[Caller, str, str]:
        """(caller, subject id, flow) for a capture token, or ``invalid_capture_token``."""
        try:
            tenant = self.store.get_tenant(str(peek_token(token).get("tenant")))
            if tenant is None:
                raise ValueError("tenant")
            p = open_token(self.capture_key(tenant), "facegate-capture", token)
            if (
                p.get("v") != 1
                or float(p["exp"]) < time.time()
                or p["flow"] not in ("enroll", "verify")
            ):
                raise ValueError("expired")
        except (ValueError, KeyError, TypeError, ProtectionError) as exc:
            raise ServiceError(
                "this capture link is not valid or has expired", code="invalid_capture_token"
            ) from exc
        caller = Caller(tenant.id, f"capture:{p['id']}", frozenset({p["flow"]}))
        return caller, str(p["subject"]), str(p["flow"])

    def capture_submit(self, token: str, challenge_token: str, video: bytes) -> dict[str, Any]:
        """Liveness, then enrolment or verification from the same session, in one step."""
        caller, subject_id, flow = self.open_capture(token)
        verdict = self.submit_liveness(caller, challenge_token, video, subject_id)
        out: dict[str, Any] = {
            "flow": flow,
            "live": verdict["live"],
            "reasons": verdict["reasons"],
            "actions": verdict["actions"],
            "result": None,
        }
        if verdict["live"] and verdict["session_id"]:
            probe = self.probe_from_session(caller, verdict["session_id"])
            if flow == "enroll":
                out["result"] = self.enroll(caller, subject_id, probe, "liveness")
            else:
                out["result"] = self.verify(caller, subject_id, probe)
        return out

    # -- enrolment --------------------------------------------------------------------------

    def enroll(self, caller: Caller, subject_id: str, probe: Probe, source: str) -> dict[str, Any]:
        self._subject(caller, subject_id)
        self.require_consent(caller, subject_id)
        tenant = self.tenant(caller.tenant_id)
        if tenant.settings.get("require_liveness") and not probe.liveness.get("live"):
            raise ServiceError(
                "this tenant enrols only from a passed liveness check", code="liveness_required"
            )
        if probe.space_id != self.engine.space_id:
            raise ServiceError(
                "probe from another embedding space", code="embedding_space_mismatch"
            )
        secrets_ = self.secrets_of(tenant)
        protected = secrets_.protect(probe.embedding)
        dup_threshold, dup_fmr = self.threshold(tenant.settings["duplicate_operating_point"])
        policy = tenant.settings["duplicate_policy"]
        template_id = "tp_" + secrets.token_hex(12)
        aad = template_aad(tenant.id, subject_id, template_id, probe.space_id)
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
        )
        # Search and insert under one tenant lock, so that two workers enrolling the same face at
        # once cannot both miss each other: the second sees the first's template.
        with self.store.tx():
            self.store.lock_tenant(tenant.id)
            self.sync_index()
            hits = self.index.search(
                tenant.id, probe.space_id, protected, k=20, min_score=dup_threshold
            )
            duplicates = _best_per_subject([h for h in hits if h.subject_id != subject_id])
            rejected = bool(duplicates) and policy == "reject"
            if not rejected:
                self.store.add_template(row)
                if self.store.stores_protected_vectors:
                    self.store.set_protected_vector(template_id, protected)
                self.store.touch_subject(tenant.id, subject_id, time.time())
                self.audit(
                    caller,
                    "enroll",
                    "flagged_duplicate" if duplicates else "ok",
                    subject_id=subject_id,
                    details={
                        "template_id": template_id,
                        "source": source,
                        "liveness": bool(probe.liveness.get("live")),
                        "duplicates": [d["subject_id"] for d in duplicates],
                    },
                )
        if rejected:
            self.audit(
                caller,
                "enroll",
                "rejected_duplicate",
                subject_id=subject_id,
                details={"duplicates": [d["subject_id"] for d in duplicates]},
            )
            raise ServiceError(
                "this face is already enrolled under another subject",
                code="duplicate_face",
                duplicates=duplicates,
            )
        self.sync_index()
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
        tenant = self.tenant(caller.tenant_id)
        self._subject(caller, subject_id)
        self.require_consent(caller, subject_id)
        doc = self.engine.analyse(document, multiple="largest")
        threshold, fmr = self.threshold(tenant.settings["operating_point"])
        score = float(np.dot(doc.embedding.vector, live.embedding))
        del doc
        if score < threshold:
            self.audit(
                caller,
                "enroll.id_document",
                "mismatch",
                subject_id=subject_id,
                details={"score": round(score, 4), "threshold": threshold},
            )
            raise ServiceError(
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

    # -- verification and search ------------------------------------------------------------

    def verify(self, caller: Caller, subject_id: str, probe: Probe) -> dict[str, Any]:
        self._subject(caller, subject_id)
        self.require_consent(caller, subject_id)
        tenant = self.tenant(caller.tenant_id)
        s = tenant.settings
        now = time.time()
        recent = self.store.verify_failures_since(
            tenant.id, subject_id, now - s["lockout_window_s"]
        )
        if len(recent) >= s["lockout_max_failures"] and now - recent[-1] < s["lockout_duration_s"]:
            self.audit(caller, "verify", "locked", subject_id=subject_id)
            raise ServiceError(
                "too many failed verifications; try later or use the alternative",
                code="subject_locked",
                retry_after_s=int(s["lockout_duration_s"] - (now - recent[-1])),
                non_face_alternative=s["non_face_alternative"],
            )
        if s.get("require_liveness") and not probe.liveness.get("live"):
            raise ServiceError(
                "this tenant verifies only with a passed liveness check", code="liveness_required"
            )
        templates = [
            t
            for t in self.store.templates_of(tenant.id, subject_id)
            if t.space_id == probe.space_id
        ]
        if not templates:
            raise ServiceError("the subject has no enrolled face", code="not_enrolled")
        secrets_ = self.secrets_of(tenant)
        protected = secrets_.protect(probe.embedding)
        score = max(
            float(
                np.dot(
                    protected,
                    secrets_.open_vector(
                        t.sealed_vector, template_aad(tenant.id, subject_id, t.id, t.space_id)
                    ),
                )
            )
            for t in templates
        )
        threshold, fmr = self.threshold(s["operating_point"])
        match = score >= threshold
        if match:
            self.store.touch_subject(tenant.id, subject_id, now)
        else:
            self.store.add_verify_failure(tenant.id, subject_id, now)
        self.audit(
            caller,
            "verify",
            "match" if match else "no_match",
            subject_id=subject_id,
            details={
                "score": round(score, 4),
                "operating_point": s["operating_point"],
                "liveness": bool(probe.liveness.get("live")),
            },
        )
        return {
            "subject_id": subject_id,
            "match": match,
            "score": round(score, 6),
            "threshold": round(threshold, 6),
            "operating_point": s["operating_point"],
            "fmr_target": fmr,
            "liveness": probe.liveness,
            "quality": probe.quality,
        }

    def search(self, caller: Caller, subject_id: str, probe: Probe, k: int) -> dict[str, Any]:
        """1:N: the probe belongs to a consenting subject; returns other subjects above the
        duplicate threshold."""
        self._subject(caller, subject_id)
        self.require_consent(caller, subject_id)
        tenant = self.tenant(caller.tenant_id)
        threshold, fmr = self.threshold(tenant.settings["duplicate_operating_point"])
        self.sync_index()
        protected = self.secrets_of(tenant).protect(probe.embedding)
        hits = [
            h
            for h in self.index.search(
                tenant.id, probe.space_id, protected, k=max(k * 3, 10), min_score=threshold
            )
            if h.subject_id != subject_id
        ]
        candidates = _best_per_subject(hits)[:k]
        self.audit(
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
            "gallery_size": self.index.size(tenant.id, probe.space_id),
        }

    def duplicates(self, caller: Caller) -> dict[str, Any]:
        """Clusters of subjects that share a face (connected components above the threshold)."""
        tenant = self.tenant(caller.tenant_id)
        threshold, _ = self.threshold(tenant.settings["duplicate_operating_point"])
        self.sync_index()
        secrets_ = self.secrets_of(tenant)
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        best: dict[frozenset[str], float] = {}
        for t in self.store.all_templates(tenant.id):
            if t.space_id != self.engine.space_id:
                continue
            v = secrets_.open_vector(
                t.sealed_vector, template_aad(tenant.id, t.subject_id, t.id, t.space_id)
            )
            for h in self.index.search(tenant.id, t.space_id, v, k=20, min_score=threshold):
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
        self.audit(caller, "duplicates.list", "ok", details={"clusters": len(clusters)})
        return {
            "clusters": clusters,
            "threshold": round(threshold, 6),
            "operating_point": tenant.settings["duplicate_operating_point"],
        }

    # -- index --------------------------------------------------------------------------------

    def _load_for_index(self, template_id: str) -> tuple | None:
        t = self.store.get_template(template_id)
        if t is None or t.space_id != self.engine.space_id:
            return None
        tenant = self.store.get_tenant(t.tenant_id)
        if tenant is None:
            return None
        v = self.secrets_of(tenant).open_vector(
            t.sealed_vector, template_aad(t.tenant_id, t.subject_id, t.id, t.space_id)
        )
        return (t.tenant_id, t.space_id, t.subject_id, v)

    def rebuild_index(self) -> None:
        if getattr(self.index, "external", False):
            return
        self.index.reset()
        opened: dict[str, TenantSecrets] = {}
        last = self.store.last_log_seq()
        batch = []
        for t in self.store.all_templates():
            if t.space_id != self.engine.space_id:
                continue
            if t.tenant_id not in opened:
                opened[t.tenant_id] = self.secrets_of(self.tenant(t.tenant_id))
            v = opened[t.tenant_id].open_vector(
                t.sealed_vector, template_aad(t.tenant_id, t.subject_id, t.id, t.space_id)
            )
            batch.append((t.tenant_id, t.space_id, t.id, t.subject_id, v))
        self.index.add_many(batch)
        self.index.synced_seq = last

    def sync_index(self) -> None:
        """Catch up with enrolments and erasures made by other workers."""
        if getattr(self.index, "external", False):
            return
        entries = self.store.template_log_since(self.index.synced_seq)
        if entries:
            self.index.sync(entries, self._load_for_index)
        if self.index.needs_rebuild():
            self.rebuild_index()

    # -- operator tasks -------------------------------------------------------------------------

    def run_retention(self, now: float | None = None) -> dict[str, Any]:
        now = now or time.time()
        report = {}
        for tenant in self.store.list_tenants():
            before = now - float(tenant.settings["retention_days"]) * 86400
            erased = 0
            for subject_id in self.store.expired_subjects(tenant.id, before):
                with self.store.tx():
                    removed = self.store.delete_templates(tenant.id, subject_id)
                    self.audit(
                        None,
                        "retention.erase",
                        "ok",
                        subject_id=subject_id,
                        tenant_id=tenant.id,
                        actor="retention",
                        details={"templates_erased": len(removed)},
                    )
                self.sync_index()  # the template log carries the removals
                erased += 1
            report[tenant.name] = {"subjects_erased": erased}
        return report

    def rotate_master_key(self) -> dict[str, Any]:
        """Re-wrap every tenant's data key under the current master key (a new one when the key
        ring is file-backed). Templates are untouched, so the service keeps running."""
        new_version = self.ring.add_version() if self.ring.path is not None else self.ring.current
        count = 0
        for tenant in self.store.list_tenants():
            dek = self.ring.unwrap(tenant.kek_version, tenant.wrapped_dek, tenant.id)
            version, wrapped = self.ring.wrap(dek, tenant.id)
            self.store.update_tenant_keys(tenant.id, kek_version=version, wrapped_dek=wrapped)
            count += 1
        self.audit(
            None,
            "keys.rotate_master",
            "ok",
            actor="operator",
            details={"master_key_version": new_version, "tenants": count},
        )
        return {"master_key_version": new_version, "tenants_rewrapped": count}

    def renew_transform(self, tenant_id: str) -> dict[str, Any]:
        """A new secret transform for one tenant; stored templates are moved to it, so copies
        taken before stop matching anything."""
        tenant = self.tenant(tenant_id)
        old = self.secrets_of(tenant)
        new_seed, new_version = secrets.token_bytes(32), tenant.transform_version + 1
        with self.store.tx():
            for t in self.store.all_templates(tenant_id):
                aad = template_aad(tenant_id, t.subject_id, t.id, t.space_id)
                v = retransform(
                    old.open_vector(t.sealed_vector, aad),
                    old.seed,
                    t.transform_version,
                    new_seed,
                    new_version,
                )
                self.store.replace_template_vector(t.id, old.seal_vector(v, aad), new_version)
                if self.store.stores_protected_vectors:
                    self.store.set_protected_vector(t.id, v)
            self.store.update_tenant_keys(
                tenant_id,
                kek_version=tenant.kek_version,
                wrapped_dek=tenant.wrapped_dek,
                sealed_transform_seed=seal(old.dek, new_seed, seed_aad(tenant_id, new_version)),
                transform_version=new_version,
            )
            self.audit(
                None,
                "keys.renew_transform",
                "ok",
                tenant_id=tenant_id,
                actor="operator",
                details={"transform_version": new_version},
            )
        self.rebuild_index()
        return {"tenant_id": tenant_id, "transform_version": new_version}


def _consent_view(c: dict[str, Any]) -> dict[str, Any]:
    return {
        k: c.get(k)
        for k in ("id", "purpose", "text_version", "method", "granted_at", "withdrawn_at")
    }


def _session_aad(tenant_id: str, session_id: str) -> bytes:
    return f"liveness-session|{tenant_id}|{session_id}".encode()


def _best_per_subject(hits: list[Hit]) -> list[dict[str, Any]]:
    best: dict[str, float] = {}
    for h in hits:
        best[h.subject_id] = max(best.get(h.subject_id, -1.0), h.score)
    return [
        {"subject_id": s, "score": round(v, 4)}
        for s, v in sorted(best.items(), key=lambda x: -x[1])
    ]


def open_store(data_dir: Path) -> tuple[Store, Any]:
    """The database and 1:N index this deployment uses: ``FACEGATE_DATABASE_URL`` selects
    PostgreSQL (its pgvector index serves 1:N), else SQLite in the data folder with an in-process
    index (``FACEGATE_INDEX``: flat, hnsw or milvus)."""
    url = os.environ.get("FACEGATE_DATABASE_URL", "")
    if url.startswith(("postgresql://", "postgres://")):
        from facegate.storage.postgres import PostgresStore

        pg = PostgresStore(url)
        return pg, DatabaseIndex(pg)
    kind = os.environ.get("FACEGATE_INDEX", "flat")
    if kind == "milvus":
        from facegate.service.milvus_index import MilvusIndex

        return SQLiteStore(data_dir / "facegate.sqlite3"), MilvusIndex(
            os.environ.get("FACEGATE_MILVUS_URI", str(data_dir / "milvus.db"))
        )
    return SQLiteStore(data_dir / "facegate.sqlite3"), GalleryIndex(kind)


def open_service(data_dir: Path, *, liveness: bool = True, num_threads: int = 1) -> FaceService:
    """Everything a server or CLI process needs, loaded once."""
    from facegate.protection.crypto import load_keyring

    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store, index = open_store(data_dir)
    ring = load_keyring()
    engine = FaceEngine(num_threads=num_threads)
    checker = LivenessChecker(engine, num_threads=num_threads) if liveness else None
    try:
        return FaceService(store, ring, engine, checker, index)
    except ProtectionError:
        log.error("the master key does not open this data folder's tenant keys")
        raise
