"""Idempotency keys: the first request with a key claims it (an insert the primary key refuses
the second time, so two workers cannot both run it); its answer is kept, sealed by the caller,
and replayed to every retry with the same key and body. Kept for a day."""

from __future__ import annotations

from dataclasses import dataclass

from facegate.storage.connection import SQLBase

KEEP_S = 86400.0


@dataclass(frozen=True)
class Claim:
    """``new``: run the request; ``done``: replay ``status``/``sealed_answer``; ``pending``:
    the first request is still running; ``mismatch``: the key was used with another body."""

    state: str
    status: int | None = None
    sealed_answer: bytes | None = None


class IdempotencyQueries(SQLBase):
    def claim_idempotency_key(
        self, tenant_id: str, key_hash: str, request_hash: str, now: float
    ) -> Claim:
        with self.tx() as db:
            db.execute("DELETE FROM idempotency WHERE created_at < ?", (now - KEEP_S,))
            r = db.execute(
                "SELECT request_hash, status, sealed_answer FROM idempotency"
                " WHERE tenant_id=? AND key_hash=?",
                (tenant_id, key_hash),
            ).fetchone()
            if r is None:
                try:
                    db.execute(
                        "INSERT INTO idempotency (tenant_id, key_hash, request_hash, created_at)"
                        " VALUES (?, ?, ?, ?)",
                        (tenant_id, key_hash, request_hash, now),
                    )
                except self.integrity_errors:  # another worker claimed it a moment ago
                    return Claim("pending")
                return Claim("new")
        if r["request_hash"] != request_hash:
            return Claim("mismatch")
        if r["status"] is None:
            return Claim("pending")
        return Claim("done", int(r["status"]), bytes(r["sealed_answer"]))

    def finish_idempotency_key(
        self, tenant_id: str, key_hash: str, status: int, sealed_answer: bytes
    ) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE idempotency SET status=?, sealed_answer=? WHERE tenant_id=? AND key_hash=?",
                (status, sealed_answer, tenant_id, key_hash),
            )

    def release_idempotency_key(self, tenant_id: str, key_hash: str) -> None:
        """The request failed on the server's side: a retry may run it again."""
        with self.tx() as db:
            db.execute(
                "DELETE FROM idempotency WHERE tenant_id=? AND key_hash=? AND status IS NULL",
                (tenant_id, key_hash),
            )
