"""Capture links: a short-lived signed link for one subject and one flow, handed to a person's
browser instead of an API key; the capture page's consent, decline, challenge and submit.

A link is also a row: it can be revoked, it dies with the key that issued it, and an enrolment
link is spent by its one submission (a conditional update, so two tabs cannot both enrol)."""

from __future__ import annotations

import secrets
from typing import Any

from facegate.errors import (
    ConflictError,
    FacegateError,
    ForbiddenError,
    InputError,
    NotFoundError,
    ProtectionError,
    UnauthenticatedError,
)
from facegate.liveness.challenge import ChallengePolicy, create_challenge
from facegate.protection.tokens import open_token, peek_token, sign_token
from facegate.service.context import Caller, ServiceContext
from facegate.service.enrolment import Enrolment
from facegate.service.liveness import LivenessSessions, require_video_upload
from facegate.service.matching import Matching
from facegate.service.policy import CAPTURE_LINK_TTL_S, CONSENT_PURPOSE
from facegate.service.probes import Probes
from facegate.service.subjects import Subjects
from facegate.service.tenants import embed_origin
from facegate.service.webhooks import emit_capture_outcome
from facegate.storage.base import CaptureLinkRow, TenantRow

FLOWS = ("enroll", "verify")
PAGE_CONSENT_METHOD = "capture page: 'I agree' after reading the consent text"


def require_chosen_allowed(
    tenant: TenantRow, actions: tuple[str, ...] | None, flash: bool | None
) -> None:
    """``LivenessSessions.new_challenge``'s rule: fixed actions or no colour flash only on an
    evaluation tenant (``allow_chosen_actions``); one recording then answers every check."""
    if (actions is not None or flash is False) and not tenant.settings.get("allow_chosen_actions"):
        raise ForbiddenError(
            "the server chooses the actions and the colour flash on this tenant",
            code="chosen_actions_not_allowed",
        )


def link_id_of(caller: Caller) -> str:
    """A capture page's caller is its link: ``capture:<link id>`` (see ``Capture.open``)."""
    return caller.key_id.removeprefix("capture:")


class Capture:
    def __init__(
        self,
        ctx: ServiceContext,
        subjects: Subjects,
        liveness: LivenessSessions,
        probes: Probes,
        enrolment: Enrolment,
        matching: Matching,
    ) -> None:
        self.ctx = ctx
        self.subjects = subjects
        self.liveness = liveness
        self.probes = probes
        self.enrolment = enrolment
        self.matching = matching

    def capture_key(self, tenant: TenantRow) -> bytes:
        return self.ctx.secrets_of(tenant).derived_key("capture")

    def new_link(
        self,
        caller: Caller,
        subject_id: str,
        flow: str,
        ttl_s: float = CAPTURE_LINK_TTL_S,
        actions: tuple[str, ...] | None = None,
        flash: bool | None = None,
    ) -> dict[str, Any]:
        """A short-lived link for one subject and one flow. ``actions`` and ``flash: false``
        (evaluation tenants only) fix the link's streamed check, e.g. for a recorded camera."""
        if flow not in FLOWS:
            raise InputError("flow must be enroll or verify", code="bad_request")
        if not caller.roles & {flow, "admin"}:
            raise ForbiddenError(f"this key cannot start a {flow} capture")
        ctx = self.ctx
        tenant = ctx.tenant(caller.tenant_id)
        require_chosen_allowed(tenant, actions, flash)
        if actions is not None:  # the challenge's own check of the names
            create_challenge(ChallengePolicy(), now=ctx.now(), actions=actions)
        ctx.subject(caller, subject_id)
        fixed: dict[str, Any] = {}
        if actions is not None:
            fixed["actions"] = list(actions)
        if flash is not None:
            fixed["flash"] = flash
        link_id = secrets.token_hex(12)
        now = ctx.now()
        expires = now + ttl_s
        ctx.store.add_capture_link(
            CaptureLinkRow(tenant.id, link_id, subject_id, flow, caller.key_id, now, expires)
        )
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
                **fixed,
            },
        )
        ctx.audit(
            caller,
            "capture.create",
            "ok",
            subject_id=subject_id,
            details={"capture_id": link_id, "flow": flow, **fixed},
        )
        return {
            "id": link_id,
            "capture_token": token,
            "url": f"/?t={token}",
            "flow": flow,
            "expires_at": expires,
        }

    def revoke_link(self, caller: Caller, link_id: str) -> dict[str, Any]:
        if not self.ctx.store.revoke_capture_link(caller.tenant_id, link_id, self.ctx.now()):
            raise NotFoundError("no such capture link")
        self.ctx.audit(caller, "capture.revoke", "ok", details={"capture_id": link_id})
        return {"id": link_id, "revoked": True}

    def open(self, token: str) -> tuple[Caller, str, str]:
        """(caller, subject id, flow) for a capture token, or ``invalid_capture_token``."""
        ctx = self.ctx
        try:
            tenant = ctx.store.get_tenant(str(peek_token(token).get("tenant")))
            if tenant is None:
                raise ValueError("tenant")
            p = open_token(self.capture_key(tenant), "facegate-capture", token)
            if p.get("v") != 1 or float(p["exp"]) < ctx.now() or p["flow"] not in FLOWS:
                raise ValueError("expired")
            link = ctx.store.get_capture_link(tenant.id, str(p["id"]))
            if link is None or link.revoked_at is not None or link.key_revoked:
                raise ValueError("revoked")
        except (ValueError, KeyError, TypeError, ProtectionError) as exc:
            raise UnauthenticatedError(
                "this capture link is not valid or has expired", code="invalid_capture_token"
            ) from exc
        caller = Caller(tenant.id, f"capture:{p['id']}", frozenset({p["flow"]}))
        return caller, str(p["subject"]), str(p["flow"])

    def embedding(self, token: str) -> tuple[list[str], str | None]:
        """(origins allowed to frame the page of ``token``, its link id) for the page's own
        headers. The signature must hold, so a forged token frames nowhere; an expired or
        revoked link still may, so that its page can say so inside the relying party's frame.
        ``([], None)`` for any token that is not ours."""
        try:
            tenant = self.ctx.store.get_tenant(str(peek_token(token).get("tenant")))
            if tenant is None:
                return [], None
            p = open_token(self.capture_key(tenant), "facegate-capture", token)
            link_id = str(p["id"])
        except (ValueError, KeyError, TypeError, ProtectionError):
            return [], None
        origins = []
        for value in tenant.settings.get("embed_origins") or []:
            try:  # as checked when set; a value stored by other means is checked here too
                origins.append(embed_origin(str(value)))
            except InputError:
                continue
        return origins, link_id

    def open_with_options(
        self, token: str
    ) -> tuple[Caller, str, str, tuple[str, ...] | None, bool | None]:
        """``open``, plus the link's fixed actions and flash setting (None: the server's)."""
        caller, subject_id, flow = self.open(token)
        p = peek_token(token)  # checked by open()
        actions = p.get("actions")
        flash = p.get("flash")
        return (
            caller,
            subject_id,
            flow,
            None if actions is None else tuple(str(a) for a in actions),
            None if flash is None else bool(flash),
        )

    def info(self, caller: Caller, subject_id: str, flow: str) -> dict[str, Any]:
        """What the page shows before any face is processed: consent text and the alternative."""
        settings = self.ctx.tenant(caller.tenant_id).settings
        consent = self.ctx.store.active_consent(caller.tenant_id, subject_id, CONSENT_PURPOSE)
        return {
            "flow": flow,
            "consent_given": consent is not None,
            **{
                k: settings[k]
                for k in ("consent_text", "consent_text_version", "non_face_alternative")
            },
        }

    def consent(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        version = self.ctx.tenant(caller.tenant_id).settings["consent_text_version"]
        return self.subjects.grant_consent(
            caller, subject_id, CONSENT_PURPOSE, version, PAGE_CONSENT_METHOD
        )

    def decline(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        self.ctx.audit(caller, "consent.decline", "ok", subject_id=subject_id)
        self._record(
            caller, "declined", {"live": None, "match": None, "enrolled": False, "reasons": []}
        )
        settings = self.ctx.tenant(caller.tenant_id).settings
        return {"non_face_alternative": settings["non_face_alternative"]}

    def _not_spent(self, caller: Caller, flow: str) -> None:
        link = self.ctx.store.get_capture_link(caller.tenant_id, link_id_of(caller))
        if flow == "enroll" and (link is None or link.used_at is not None):
            raise ConflictError(
                "this enrolment link has been used; ask for a new one", code="capture_link_used"
            )

    def challenge(self, caller: Caller, subject_id: str, flow: str) -> dict[str, Any]:
        """The server's challenge (actions and colour flash) for this subject and flow; it
        counts against the subject's attempts until a live answer arrives."""
        self.ctx.require_consent(caller, subject_id)
        self._not_spent(caller, flow)
        return self.liveness.new_challenge(caller, None, None, subject_id, flow)

    def submit(self, token: str, challenge_token: str, video: bytes) -> dict[str, Any]:
        """Liveness, then enrolment or verification from the same session, in one step."""
        caller, subject_id, flow = self.open(token)
        require_video_upload(self.ctx.tenant(caller.tenant_id))
        link_id = link_id_of(caller)
        if flow == "enroll" and not self.ctx.store.spend_capture_link(
            caller.tenant_id, link_id, self.ctx.now()
        ):
            raise ConflictError(
                "this enrolment link has been used; ask for a new one", code="capture_link_used"
            )
        verdict = self.liveness.submit(caller, challenge_token, video, subject_id, flow)
        out: dict[str, Any] = {
            "flow": flow,
            "live": verdict["live"],
            "reasons": verdict["reasons"],
            "actions": verdict["actions"],
            "result": None,
        }
        out["result"] = self.finish(
            caller, subject_id, flow, verdict["session_id"], verdict["live"], verdict["reasons"]
        )
        return out

    def finish(
        self,
        caller: Caller,
        subject_id: str,
        flow: str,
        session_id: str | None,
        live: bool,
        reasons: list[dict[str, Any]],
    ) -> dict[str, Any] | None:
        """After a capture's liveness verdict (uploaded or streamed): enrol or verify from the
        live session at once, and record the link's outcome for the relying party."""
        result = None
        codes = [r["code"] for r in reasons]
        try:
            if live and session_id:
                probe = self.probes.from_session(caller, session_id, subject_id, (flow,))
                if flow == "enroll":
                    result = self.enrolment.enroll(caller, subject_id, probe, "liveness")
                else:
                    result = self.matching.verify(caller, subject_id, probe)
        except (
            FacegateError
        ) as exc:  # locked, a duplicate refused...: the link failed, and says why
            outcome = {
                "live": live,
                "match": None,
                "enrolled": False,
                "reasons": [*codes, exc.code],
            }
            self._record(caller, "failed", outcome)
            raise
        passed = live and result is not None and (flow == "enroll" or bool(result["match"]))
        outcome = {
            "live": live,
            "match": None if result is None or flow == "enroll" else bool(result["match"]),
            "enrolled": flow == "enroll" and result is not None,
            "reasons": codes,
        }
        self._record(caller, "passed" if passed else "failed", outcome)
        return result

    def _record(self, caller: Caller, status: str, outcome: dict[str, Any]) -> None:
        """The link's outcome and its webhook event (if the tenant has one) in one transaction:
        no outcome is recorded without its event, nor announced without being recorded."""
        link_id = link_id_of(caller)
        with self.ctx.store.tx():
            self.ctx.store.record_capture_outcome(
                caller.tenant_id, link_id, status, outcome, self.ctx.now()
            )
            emit_capture_outcome(self.ctx, caller.tenant_id, link_id, status, outcome)

    def link_status(self, caller: Caller, link_id: str) -> dict[str, Any]:
        """A link's state for the relying party's back end: pending, passed, failed, declined,
        expired or revoked, with the result of its last capture (no biometric data)."""
        link = self.ctx.store.get_capture_link(caller.tenant_id, link_id)
        if link is None:
            raise NotFoundError("no such capture link")
        if link.revoked_at is not None or link.key_revoked:
            status = "revoked"
        elif link.outcome is not None:
            status = link.outcome
        elif link.expires_at < self.ctx.now():
            status = "expired"
        else:
            status = "pending"
        return {
            "id": link.id,
            "status": status,
            "flow": link.flow,
            "subject_id": link.subject_id,
            "created_at": link.created_at,
            "expires_at": link.expires_at,
            "completed_at": link.outcome_at,
            "result": link.result,
        }
