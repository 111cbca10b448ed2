"""The audit log: append-only, hash-chained, never holding biometric data.

Each record's hash covers the previous record's hash, so ``verify_audit_chain`` finds altered,
removed and reordered records (the database also refuses edits with triggers).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from facegate.storage.base import AuditRecord
from facegate.storage.connection import SQLBase

GENESIS_HASH = "0" * 64
CHAINED_FIELDS = ("seq", "at", "tenant_id", "actor", "action", "subject_id", "outcome", "details")


def audit_hash(prev_hash: str, record: dict[str, Any]) -> str:
    body = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev_hash + "|" + body).encode()).hexdigest()


class AuditLog(SQLBase):
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
    ) -> None:
        with self.tx() as db:
            self._lock_audit(db)
            last = db.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            prev = last["hash"] if last else GENESIS_HASH
            seq = int(
                db.execute("SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM audit").fetchone()["n"]
            )
            record = {
                "seq": seq,
                "at": at,
                "tenant_id": tenant_id,
                "actor": actor,
                "action": action,
                "subject_id": subject_id,
                "outcome": outcome,
                "details": details,
            }
            db.execute(
                "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    at,
                    tenant_id,
                    actor,
                    action,
                    subject_id,
                    outcome,
                    json.dumps(details, sort_keys=True),
                    prev,
                    audit_hash(prev, record),
                ),
            )

    def audit_records(
        self, tenant_id: str | None = None, subject_id: str | None = None
    ) -> list[AuditRecord]:
        sql, args = "SELECT * FROM audit", []
        clauses = []
        if tenant_id is not None:
            clauses.append("tenant_id=?")
            args.append(tenant_id)
        if subject_id is not None:
            clauses.append("subject_id=?")
            args.append(subject_id)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        rows = self._db().execute(sql + " ORDER BY seq", args)
        return [AuditRecord(**{**dict(r), "details": json.loads(r["details"])}) for r in rows]


def verify_audit_chain(records: list[AuditRecord]) -> tuple[bool, list[dict[str, Any]]]:
    """Recompute the chain; returns (ok, problems). Finds altered, removed and reordered records."""
    problems: list[dict[str, Any]] = []
    prev = GENESIS_HASH
    expected_seq = 1
    for r in records:
        if r.seq != expected_seq:
            problems.append(
                {
                    "seq": r.seq,
                    "problem": f"expected record {expected_seq} here (removed or reordered)",
                }
            )
        if r.prev_hash != prev:
            problems.append({"seq": r.seq, "problem": "does not follow the previous record"})
        record = {k: getattr(r, k) for k in CHAINED_FIELDS}
        if audit_hash(r.prev_hash, record) != r.hash:
            problems.append({"seq": r.seq, "problem": "content altered"})
        prev = r.hash
        expected_seq = r.seq + 1
    return not problems, problems
