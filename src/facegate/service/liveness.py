"""Liveness on the service: signed per-tenant challenges chosen by the server (at least two
actions and a colour flash), bound at issue to a subject and a purpose and counted against the
subject's attempts; checks of uploaded videos that leave a single-use session, bound to the same
subject and purpose, holding the sealed embedding of the live face."""

from __future__ import annotations

import secrets
from typing import Any

from facegate.errors import (
    ChallengeUsedError,
    ConflictError,
    FacegateError,
    ForbiddenError,
    InputError,
    UnavailableError,
)
from facegate.liveness.challenge import ChallengePolicy, create_challenge
from facegate.liveness.challenge import sign as sign_challenge
from facegate.liveness.challenge import verify as verify_challenge
from facegate.service.attempts import Attempts
from facegate.service.context import Caller, ServiceContext
from facegate.service.policy import LIVENESS_SESSION_TTL_S, PURPOSES
from facegate.service.sealed_writes import add_liveness_session
from facegate.storage.base import TenantRow


def check_purpose(purpose: str | None) -> None:
    if purpose is not None and purpose not in PURPOSES:
        raise InputError(f"purpose must be one of {', '.join(PURPOSES)}", code="bad_request")


def require_video_upload(tenant: TenantRow) -> None:
    """Whole-video uploads only where the tenant's admin allowed them: a challenge known in full
    can be answered by an offline renderer; the stream reveals it step by step."""
    if not tenant.settings.get("allow_video_upload"):
        raise ForbiddenError(
            "this tenant accepts streamed checks only (/v1/liveness/stream)",
            code="video_upload_disabled",
        )


class LivenessSessions:
    def __init__(self, ctx: ServiceContext, attempts: Attempts) -> None:
        self.ctx = ctx
        self.attempts = attempts

    def challenge_key(self, tenant: TenantRow) -> bytes:
        return self.ctx.secrets_of(tenant).derived_key("challenge")

    def new_challenge(
        self,
        caller: Caller,
        actions: tuple[str, ...] | None,
        flash: bool | None,
        subject_id: str | None = None,
        purpose: str | None = None,
    ) -> dict[str, Any]:
        """The server chooses the actions and always flashes colours, unless the tenant's admin
        enabled the evaluation setting ``allow_chosen_actions``. With a subject, the challenge
        counts as a failed attempt until a live answer to it arrives."""
        ctx = self.ctx
        tenant = ctx.tenant(caller.tenant_id)
        check_purpose(purpose)
        if (actions is not None or flash is False) and not tenant.settings.get(
            "allow_chosen_actions"
        ):
            raise ForbiddenError(
                "the server chooses the actions and the colour flash on this tenant",
                code="chosen_actions_not_allowed",
            )
        if subject_id is not None:
            ctx.subject(caller, subject_id)
            ctx.require_consent(caller, subject_id)
        challenge = create_challenge(
            ChallengePolicy(flash=flash is not False),
            now=ctx.now(),
            actions=actions,
            subject_id=subject_id,
            purpose=purpose,
        )
        if subject_id is not None:
            self.attempts.begin(
                caller, tenant, subject_id, "challenge", "liveness.challenge", challenge.id
            )
        return {
            **challenge.payload(),
            "token": sign_challenge(challenge, self.challenge_key(tenant)),
        }

    def submit(
        self,
        caller: Caller,
        token: str,
        video: bytes,
        subject_id: str | None = None,
        purpose: str | None = None,
    ) -> dict[str, Any]:
        """Judge a video against its challenge; a live verdict leaves a single-use session for
        the challenge's subject and purpose. A verdict that is not live counts as a failure."""
        ctx = self.ctx
        if ctx.checker is None:
            raise UnavailableError(
                "liveness is not enabled on this server", code="liveness_disabled"
            )
        tenant = ctx.tenant(caller.tenant_id)
        require_video_upload(tenant)
        now = ctx.now()
        challenge = verify_challenge(token, self.challenge_key(tenant), now=now)
        check_purpose(purpose)
        for given, bound, name in (
            (subject_id, challenge.subject_id, "subject"),
            (purpose, challenge.purpose, "purpose"),
        ):
            if given is not None and bound is not None and given != bound:
                raise ConflictError(
                    f"the challenge was issued for another {name}", code="challenge_mismatch"
                )
        subject_id = challenge.subject_id or subject_id
        purpose = challenge.purpose or purpose
        if subject_id is None or purpose is None:
            raise InputError(
                "name the subject_id and purpose (enroll or verify) the check is for",
                code="subject_required",
            )
        ctx.subject(caller, subject_id)
        ctx.require_consent(caller, subject_id)
        if challenge.subject_id is None:  # an unbound challenge is counted when it is answered
            self.attempts.begin(
                caller, tenant, subject_id, "challenge", "liveness.check", challenge.id
            )
        if not ctx.store.spend_challenge(caller.tenant_id, challenge.id, challenge.expires_at, now):
            raise ChallengeUsedError("this challenge was already used")
        try:
            result = ctx.checker.check(video, challenge)
            ctx.timed("video", result.timings_ms)
        except FacegateError:
            self.attempts.settle(caller, tenant, subject_id, challenge.id, ok=False)
            raise
        live = result.verdict.live
        self.attempts.settle(caller, tenant, subject_id, challenge.id, ok=live)
        verdict = result.to_dict()
        session_id = "ls_" + secrets.token_hex(12)
        summary = {"reasons": verdict["reasons"], "challenge_id": challenge.id}
        add_liveness_session(  # sealed under the keys current at the write, not ``tenant``'s
            ctx,
            caller.tenant_id,
            session_id,
            live,
            result.best_embedding,
            summary,
            now + LIVENESS_SESSION_TTL_S,
            subject_id,
            purpose,
        )
        ctx.audit(
            caller,
            "liveness.check",
            "live" if live else "not_live",
            subject_id=subject_id,
            details={
                "challenge_id": challenge.id,
                "purpose": purpose,
                "reasons": [r["code"] for r in verdict["reasons"]],
            },
        )
        return {"session_id": session_id if live else None, **verdict}
