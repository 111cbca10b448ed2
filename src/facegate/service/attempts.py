"""Every guess at a subject is counted: challenges issued, failed liveness checks, refused and
failed verifications. ``begin`` admits an attempt or refuses it (423 while locked); ``settle``
records its outcome; both decide atomically in the store (storage/attempts.py), so parallel
attempts cannot overrun the limit. A lock lasts its full duration from the last failure."""

from __future__ import annotations

import secrets

from facegate.errors import LockedError
from facegate.service.context import Caller, ServiceContext
from facegate.service.policy import attempt_policy
from facegate.storage.base import TenantRow


class Attempts:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def locked_error(self, tenant: TenantRow, wait_s: float) -> LockedError:
        return LockedError(
            "too many failed attempts for this subject; try later or use the alternative",
            code="subject_locked",
            retry_after_s=max(1, int(wait_s + 0.999)),
            non_face_alternative=tenant.settings["non_face_alternative"],
        )

    def begin(
        self,
        caller: Caller,
        tenant: TenantRow,
        subject_id: str,
        kind: str,
        action: str,
        attempt_id: str | None = None,
    ) -> str:
        """Admit an attempt (its id is returned) or raise ``LockedError`` (audited)."""
        attempt_id = attempt_id or "at_" + secrets.token_hex(12)
        wait, locked_now = self.ctx.store.begin_attempt(
            tenant.id, subject_id, attempt_id, kind, self.ctx.now(), attempt_policy(tenant.settings)
        )
        if wait > 0:
            if locked_now:
                self.ctx.audit(caller, "subject.locked", "locked", subject_id=subject_id)
            self.ctx.audit(caller, action, "locked", subject_id=subject_id)
            raise self.locked_error(tenant, wait)
        return attempt_id

    def settle(
        self, caller: Caller, tenant: TenantRow, subject_id: str, attempt_id: str, ok: bool
    ) -> None:
        locked_now = self.ctx.store.settle_attempt(
            tenant.id, subject_id, attempt_id, ok, self.ctx.now(), attempt_policy(tenant.settings)
        )
        if locked_now:
            # repeated lockouts are visible to the admin: the audit and the subject's view
            self.ctx.audit(caller, "subject.locked", "locked", subject_id=subject_id)

    def locked_for(self, tenant: TenantRow, subject_id: str) -> float:
        """Seconds the subject stays locked (0 when it is not)."""
        state = self.ctx.store.lock_state(tenant.id, subject_id)
        if state.locked_until is None:
            return 0.0
        return max(0.0, state.locked_until - self.ctx.now())

    def clear(self, caller: Caller, tenant: TenantRow, subject_id: str) -> None:
        self.ctx.store.clear_lock(tenant.id, subject_id)
        self.ctx.audit(caller, "subject.unlocked", "live_match", subject_id=subject_id)
