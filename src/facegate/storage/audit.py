"""The audit log: append-only, chained with keyed hashes, never holding biometric data.

Each record's hash is an HMAC-SHA256, under a chain key derived from the master key (never in the
database), of the previous record's hash and the record itself; the record names the master-key
version that keyed it. A database writer can edit or delete rows (the triggers stop only honest
mistakes), but cannot make a forged, re-chained or shortened log verify: re-chaining needs the
key, and a cut-off tail is caught by the head anchored outside the database
(``audit_anchor.py``). Records written before keying (``key_version`` NULL) keep their plain
SHA-256 hash and are accepted only as a prefix of the log.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from facegate.errors import ProtectionError
from facegate.protection.audit_keys import AuditKey
from facegate.storage.base import AuditRecord
from facegate.storage.connection import SQLBase

GENESIS_HASH = "0" * 64
CHAINED_FIELDS = ("seq", "at", "tenant_id", "actor", "action", "subject_id", "outcome", "details")
KeyLookup = Callable[[int], AuditKey]


@dataclass(frozen=True)
class AuditHead:
    """The last record of the chain: what the anchor and checkpoints vouch for."""

    seq: int
    hash: str


def _body(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def audit_hash(prev_hash: str, record: dict[str, Any]) -> str:
    """The unkeyed hash of records written before the chain was keyed."""
    return hashlib.sha256((prev_hash + "|" + _body(record)).encode()).hexdigest()


def keyed_hash(key: AuditKey, prev_hash: str, record: dict[str, Any]) -> str:
    return key.mac(("keyed|" + str(key.version) + "|" + prev_hash + "|" + _body(record)).encode())


class AuditLog(SQLBase):
    audit_anchor: Any = None  # an AuditAnchor told of every append (set by the composition)

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
        audit_key: AuditKey,
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
                "INSERT INTO audit (seq, at, tenant_id, actor, action, subject_id, outcome,"
                " details, prev_hash, hash, key_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    keyed_hash(audit_key, prev, record),
                    audit_key.version,
                ),
            )
        if self.audit_anchor is not None:
            self.audit_anchor.note()

    def _records(self, sql: str, args: Any) -> list[AuditRecord]:
        rows = self._db().execute(sql, args)
        return [AuditRecord(**{**dict(r), "details": json.loads(r["details"])}) for r in rows]

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
        return self._records(sql + " ORDER BY seq", args)

    def audit_records_since(self, seq: int) -> list[AuditRecord]:
        """Records from ``seq`` on (inclusive), in order: the anchor checks only what is new."""
        return self._records("SELECT * FROM audit WHERE seq>=? ORDER BY seq", (seq,))

    def audit_head(self) -> AuditHead | None:
        r = self._db().execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return AuditHead(int(r["seq"]), str(r["hash"])) if r else None


def verify_audit_chain(
    records: list[AuditRecord],
    keys: KeyLookup | None = None,
    anchor: AuditHead | None = None,
    *,
    start: AuditHead | None = None,
) -> tuple[bool, list[dict[str, Any]]]:
    """Recompute the chain; returns (ok, problems).

    With ``keys`` (chain key by master-key version) every keyed hash is recomputed: altered,
    forged, re-chained, removed and reordered records are found. Without keys only the linkage is
    checked (what a database writer could forge). ``anchor``, the head recorded outside the
    database, finds a cut-off tail. ``start`` verifies a segment that begins after that head."""
    problems: list[dict[str, Any]] = []
    prev = start.hash if start else GENESIS_HASH
    expected_seq = start.seq + 1 if start else 1
    keyed_seen = False
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
        if r.key_version is None:
            if keyed_seen:
                problems.append({"seq": r.seq, "problem": "unkeyed record after keyed ones"})
            elif audit_hash(r.prev_hash, record) != r.hash:
                problems.append({"seq": r.seq, "problem": "content altered"})
        else:
            keyed_seen = True
            if keys is not None:
                try:
                    expected = keyed_hash(keys(r.key_version), r.prev_hash, record)
                except ProtectionError:
                    problems.append({"seq": r.seq, "problem": "keyed by an unknown master key"})
                else:
                    if expected != r.hash:
                        problems.append({"seq": r.seq, "problem": "content altered"})
        prev = r.hash
        expected_seq = r.seq + 1
    if anchor is not None:
        problems += head_problems(records, anchor)
    return not problems, problems


def head_problems(records: list[AuditRecord], head: AuditHead) -> list[dict[str, Any]]:
    """What is wrong with the log against a head recorded outside it (anchor, checkpoint): the
    record must still be there, with the same hash."""
    at = next((r for r in records if r.seq == head.seq), None)
    last = records[-1].seq if records else 0
    if at is None and head.seq > last:
        return [
            {
                "seq": head.seq,
                "problem": f"the anchored head is record {head.seq} but the log ends at {last}"
                " (records removed from the end)",
            }
        ]
    if at is None or at.hash != head.hash:
        return [{"seq": head.seq, "problem": "differs from the anchored head (rewritten)"}]
    return []
