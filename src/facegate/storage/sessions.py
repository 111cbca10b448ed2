"""Liveness challenges, liveness sessions and capture links: the single-use things, each spent
by one conditional statement (``UPDATE ... WHERE used_at IS NULL``, or an insert that a primary
key refuses the second time), so that two workers or machines can never both spend one."""

from __future__ import annotations

import json
from typing import Any

from facegate.storage.base import CaptureLinkRow, LivenessSessionRow
from facegate.storage.connection import SQLBase


class SessionQueries(SQLBase):
    # -- liveness ---------------------------------------------------------------------------

    def spend_challenge(
        self, tenant_id: str, challenge_id: str, expires_at: float, now: float
    ) -> bool:
        """True when spent now; False when it had been spent before."""
        with self.tx() as db:
            db.execute("DELETE FROM spent_challenges WHERE expires_at < ?", (now - 3600,))
            try:
                db.execute(
                    "INSERT INTO spent_challenges VALUES (?, ?, ?)",
                    (tenant_id, challenge_id, expires_at),
                )
            except self.integrity_errors:
                return False
            return True

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
    ) -> None:
        """``dek_version``: the data key that sealed ``sealed_vector``, as the sealing code
        says (None: unknown, re-sealed by the next data-key rotation)."""
        with self.tx() as db:
            db.execute("DELETE FROM liveness_sessions WHERE expires_at < ?", (expires_at - 7200,))
            db.execute(
                "INSERT INTO liveness_sessions (tenant_id, id, live, space_id, sealed_vector,"
                " summary, expires_at, used_at, subject_id, purpose, dek_version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                (
                    tenant_id,
                    session_id,
                    int(live),
                    space_id,
                    sealed_vector,
                    json.dumps(summary),
                    expires_at,
                    subject_id,
                    purpose,
                    dek_version,
                ),
            )

    def take_liveness_session(
        self,
        tenant_id: str,
        session_id: str,
        subject_id: str,
        purposes: tuple[str, ...],
        now: float,
    ) -> LivenessSessionRow | None:
        """Single use, for the subject and a purpose it was made for, before it expires: the
        claiming UPDATE is conditional, so of two concurrent takers exactly one wins."""
        marks = ", ".join("?" for _ in purposes)
        with self.tx() as db:
            claimed = db.execute(
                "UPDATE liveness_sessions SET used_at=? WHERE tenant_id=? AND id=?"
                " AND used_at IS NULL AND expires_at>=? AND subject_id=?"
                f" AND purpose IN ({marks})",
                (now, tenant_id, session_id, now, subject_id, *purposes),
            ).rowcount
            if claimed != 1:
                return None
            r = db.execute(
                "SELECT * FROM liveness_sessions WHERE tenant_id=? AND id=?",
                (tenant_id, session_id),
            ).fetchone()
            db.execute(
                "UPDATE liveness_sessions SET sealed_vector=NULL WHERE tenant_id=? AND id=?",
                (tenant_id, session_id),
            )
            return LivenessSessionRow(
                tenant_id=r["tenant_id"],
                id=r["id"],
                live=bool(r["live"]),
                space_id=r["space_id"],
                sealed_vector=r["sealed_vector"],
                summary=json.loads(r["summary"]),
                expires_at=r["expires_at"],
                used_at=now,
                subject_id=r["subject_id"],
                purpose=r["purpose"],
            )

    # -- capture links ----------------------------------------------------------------------

    def add_capture_link(self, row: CaptureLinkRow) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM capture_links WHERE expires_at < ?", (row.created_at - 86400,))
            db.execute(
                "INSERT INTO capture_links (tenant_id, id, subject_id, flow, key_id, created_at,"
                " expires_at, used_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                (
                    row.tenant_id,
                    row.id,
                    row.subject_id,
                    row.flow,
                    row.key_id,
                    row.created_at,
                    row.expires_at,
                ),
            )

    def get_capture_link(self, tenant_id: str, link_id: str) -> CaptureLinkRow | None:
        """The link, with ``key_revoked`` true when the key that issued it has been revoked."""
        r = (
            self._db()
            .execute(
                "SELECT l.*, k.revoked_at AS key_revoked_at FROM capture_links l"
                " LEFT JOIN api_keys k ON k.id = l.key_id AND k.tenant_id = l.tenant_id"
                " WHERE l.tenant_id=? AND l.id=?",
                (tenant_id, link_id),
            )
            .fetchone()
        )
        if r is None:
            return None
        return CaptureLinkRow(
            tenant_id=r["tenant_id"],
            id=r["id"],
            subject_id=r["subject_id"],
            flow=r["flow"],
            key_id=r["key_id"],
            created_at=r["created_at"],
            expires_at=r["expires_at"],
            used_at=r["used_at"],
            revoked_at=r["revoked_at"],
            key_revoked=r["key_revoked_at"] is not None,
            outcome=r["outcome"],
            outcome_at=r["outcome_at"],
            result=json.loads(r["result"]) if r["result"] else None,
        )

    def spend_capture_link(self, tenant_id: str, link_id: str, now: float) -> bool:
        """True for the one caller that spends it (enrolment links are single use)."""
        with self.tx() as db:
            return (
                db.execute(
                    "UPDATE capture_links SET used_at=? WHERE tenant_id=? AND id=?"
                    " AND used_at IS NULL AND revoked_at IS NULL AND expires_at>=?",
                    (now, tenant_id, link_id, now),
                ).rowcount
                == 1
            )

    def record_capture_outcome(
        self, tenant_id: str, link_id: str, outcome: str, result: dict[str, Any], now: float
    ) -> None:
        """The latest outcome of a link's capture (a verify link may be used again)."""
        with self.tx() as db:
            db.execute(
                "UPDATE capture_links SET outcome=?, outcome_at=?, result=?"
                " WHERE tenant_id=? AND id=?",
                (outcome, now, json.dumps(result), tenant_id, link_id),
            )

    def revoke_capture_link(self, tenant_id: str, link_id: str, now: float) -> bool:
        with self.tx() as db:
            return (
                db.execute(
                    "UPDATE capture_links SET revoked_at=? WHERE tenant_id=? AND id=?"
                    " AND revoked_at IS NULL",
                    (now, tenant_id, link_id),
                ).rowcount
                == 1
            )
