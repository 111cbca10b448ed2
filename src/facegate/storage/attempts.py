"""Attempt counting for the lockout, atomic on every backend.

Every guess at a subject counts: a challenge issued for it (a failure until its liveness check
passes), a failed liveness check, a refused or failed verification. Each attempt is a row; the
decision "may this attempt go ahead?" and the row it adds happen in one transaction under a
per-subject lock (SQLite: the database's write lock, taken by ``BEGIN IMMEDIATE``; PostgreSQL: a
transaction-scoped advisory lock on the subject), so 16 parallel guesses cannot all pass a
check made before any of them is counted. A lock lasts its full duration from the failure that
set it (``locked_until``), whatever the counting window.
"""

from __future__ import annotations

from facegate.storage.base import AttemptPolicy, LockState
from facegate.storage.connection import Connection, SQLBase

# Kinds of attempt rows. "pending": a verification in progress (admitted, not yet scored);
# "challenge": a challenge issued and not yet passed; "failed": a failed check or verification.
FAILURE_KINDS = ("challenge", "failed")


class AttemptQueries(SQLBase):
    def lock_subject(self, db: Connection, tenant_id: str, subject_id: str) -> None:
        """Serialise attempt decisions for one subject (inside ``tx``). SQLite's write lock
        already serialises every writer; PostgreSQL overrides this with an advisory lock."""

    def _lock_until(self, db: Connection, tenant_id: str, subject_id: str) -> float | None:
        r = db.execute(
            "SELECT locked_until FROM subject_locks WHERE tenant_id=? AND subject_id=?",
            (tenant_id, subject_id),
        ).fetchone()
        return None if r is None else r["locked_until"]

    def _count(self, db: Connection, tenant_id: str, subject_id: str, since: float) -> int:
        r = db.execute(
            "SELECT COUNT(*) AS n FROM attempts WHERE tenant_id=? AND subject_id=? AND at>=?"
            " AND kind IN ('challenge', 'failed')",
            (tenant_id, subject_id, since),
        ).fetchone()
        return int(r["n"])

    def _count_all(self, db: Connection, tenant_id: str, subject_id: str, since: float) -> int:
        r = db.execute(
            "SELECT COUNT(*) AS n FROM attempts WHERE tenant_id=? AND subject_id=? AND at>=?",
            (tenant_id, subject_id, since),
        ).fetchone()
        return int(r["n"])

    def _set_lock(self, db: Connection, tenant_id: str, subject_id: str, until: float) -> None:
        updated = db.execute(
            "UPDATE subject_locks SET locked_until=?, lockouts=lockouts+1"
            " WHERE tenant_id=? AND subject_id=?",
            (until, tenant_id, subject_id),
        ).rowcount
        if not updated:
            db.execute(
                "INSERT INTO subject_locks (tenant_id, subject_id, locked_until, lockouts)"
                " VALUES (?, ?, ?, 1)",
                (tenant_id, subject_id, until),
            )

    def begin_attempt(
        self,
        tenant_id: str,
        subject_id: str,
        attempt_id: str,
        kind: str,
        now: float,
        policy: AttemptPolicy,
    ) -> tuple[float, bool]:
        """Admit one attempt (adding its row) or refuse it: returns (seconds to wait, whether a
        lock was set by this call). 0 means admitted. A challenge counts as a failure at once."""
        with self.tx() as db:
            self.lock_subject(db, tenant_id, subject_id)
            until = self._lock_until(db, tenant_id, subject_id)
            if until is not None and until > now:
                return until - now, False
            since = now - policy.window_s
            if self._count(db, tenant_id, subject_id, since) >= policy.max_failures:
                self._set_lock(db, tenant_id, subject_id, now + policy.lock_s)
                return policy.lock_s, True
            if self._count_all(db, tenant_id, subject_id, since) >= policy.max_failures:
                # as many attempts as allowed are already in flight: wait for them
                return max(1.0, policy.window_s / policy.max_failures), False
            db.execute(
                "INSERT INTO attempts (tenant_id, subject_id, id, kind, at) VALUES (?, ?, ?, ?, ?)",
                (tenant_id, subject_id, attempt_id, kind, now),
            )
            return 0.0, False

    def settle_attempt(
        self,
        tenant_id: str,
        subject_id: str,
        attempt_id: str,
        succeeded: bool,
        now: float,
        policy: AttemptPolicy,
    ) -> bool:
        """Success removes the attempt; a failure stays counted and may lock the subject for
        the full lock duration from now. Returns True when this failure set the lock."""
        with self.tx() as db:
            self.lock_subject(db, tenant_id, subject_id)
            if succeeded:
                db.execute(
                    "DELETE FROM attempts WHERE tenant_id=? AND id=?", (tenant_id, attempt_id)
                )
                return False
            updated = db.execute(
                "UPDATE attempts SET kind='failed', at=? WHERE tenant_id=? AND id=?",
                (now, tenant_id, attempt_id),
            ).rowcount
            if not updated:
                db.execute(
                    "INSERT INTO attempts (tenant_id, subject_id, id, kind, at)"
                    " VALUES (?, ?, ?, 'failed', ?)",
                    (tenant_id, subject_id, attempt_id, now),
                )
            if self._count(db, tenant_id, subject_id, now - policy.window_s) >= policy.max_failures:
                self._set_lock(db, tenant_id, subject_id, now + policy.lock_s)
                return True
            return False

    def clear_lock(self, tenant_id: str, subject_id: str) -> None:
        """Lift a lock and forget counted failures (a genuine live match, where allowed)."""
        with self.tx() as db:
            self.lock_subject(db, tenant_id, subject_id)
            db.execute(
                "UPDATE subject_locks SET locked_until=NULL WHERE tenant_id=? AND subject_id=?",
                (tenant_id, subject_id),
            )
            db.execute(
                "DELETE FROM attempts WHERE tenant_id=? AND subject_id=? AND kind='failed'",
                (tenant_id, subject_id),
            )

    def lock_state(self, tenant_id: str, subject_id: str) -> LockState:
        r = (
            self._db()
            .execute(
                "SELECT locked_until, lockouts FROM subject_locks"
                " WHERE tenant_id=? AND subject_id=?",
                (tenant_id, subject_id),
            )
            .fetchone()
        )
        return LockState(None, 0) if r is None else LockState(r["locked_until"], r["lockouts"])

    def prune_attempts(self, before: float) -> int:
        with self.tx() as db:
            return int(db.execute("DELETE FROM attempts WHERE at < ?", (before,)).rowcount)
