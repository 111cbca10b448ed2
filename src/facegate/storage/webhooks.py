"""Webhooks: each tenant's endpoint (its URL and signing secret only sealed, under the tenant's
data key) and the outbox of events to deliver to it.

An event's row is written in the transaction that makes the event (a capture link's outcome),
so an event is never lost to a crash between the two. A delivery attempt is claimed by one
conditional ``UPDATE`` (``claimed_until`` in the past or NULL, still pending and due): of two
workers or machines racing for a row exactly one sees ``rowcount == 1``, on SQLite (one writer
at a time) and on PostgreSQL (the loser's UPDATE waits for the row lock, then re-reads the
condition and matches nothing). A claim is a lease, and it moves the row's next attempt past the
lease and the back-off: a worker that dies mid-attempt leaves the row to be tried again then, as
after a failed attempt (never at once, never beyond ``max_attempts``). The attempt's result is
written only by the holder of the claim (its random ``claim`` token).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from facegate.storage.connection import SQLBase

KEEP_S = 30 * 86400.0  # delivered and failed rows are kept this long for the delivery log


@dataclass(frozen=True)
class WebhookRow:
    tenant_id: str
    sealed_config: bytes = field(repr=False)  # URL, secret (and the previous secret): sealed
    events: tuple[str, ...]
    created_at: float
    updated_at: float
    dek_version: int | None = None  # the data key that sealed it (None: unknown, re-sealed)


@dataclass(frozen=True)
class DeliveryRow:
    tenant_id: str
    id: str  # the event's id (evt_...): the receiver's de-duplication key
    event_type: str
    payload: str  # the JSON body sent (ids, status, reason codes, times: no biometric data)
    status: str  # pending, delivered, failed
    attempts: int
    next_attempt_at: float
    created_at: float
    claim: str | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None


@dataclass(frozen=True)
class ExpiredLink:
    tenant_id: str
    id: str
    subject_id: str
    flow: str
    created_at: float
    expires_at: float


def _delivery(r: Any) -> DeliveryRow:
    return DeliveryRow(
        tenant_id=r["tenant_id"],
        id=r["id"],
        event_type=r["event_type"],
        payload=r["payload"],
        status=r["status"],
        attempts=int(r["attempts"]),
        next_attempt_at=float(r["next_attempt_at"]),
        created_at=float(r["created_at"]),
        claim=r["claim"],
        last_status_code=r["last_status_code"],
        last_error=r["last_error"],
        delivered_at=r["delivered_at"],
    )


class WebhookQueries(SQLBase):
    # -- configuration ------------------------------------------------------------------------

    def get_webhook(self, tenant_id: str) -> WebhookRow | None:
        r = self._db().execute("SELECT * FROM webhooks WHERE tenant_id=?", (tenant_id,)).fetchone()
        if r is None:
            return None
        return WebhookRow(
            r["tenant_id"],
            bytes(r["sealed_config"]),
            tuple(json.loads(r["events"])),
            float(r["created_at"]),
            float(r["updated_at"]),
            r["dek_version"],
        )

    def put_webhook(self, row: WebhookRow) -> None:
        """Create or replace the tenant's endpoint (``created_at`` is kept on a replace)."""
        with self.tx() as db:
            updated = db.execute(
                "UPDATE webhooks SET sealed_config=?, events=?, updated_at=?, dek_version=?"
                " WHERE tenant_id=?",
                (
                    row.sealed_config,
                    json.dumps(list(row.events)),
                    row.updated_at,
                    row.dek_version,
                    row.tenant_id,
                ),
            ).rowcount
            if not updated:
                db.execute(
                    "INSERT INTO webhooks (tenant_id, sealed_config, events, created_at,"
                    " updated_at, dek_version) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        row.tenant_id,
                        row.sealed_config,
                        json.dumps(list(row.events)),
                        row.created_at,
                        row.updated_at,
                        row.dek_version,
                    ),
                )

    def delete_webhook(self, tenant_id: str) -> bool:
        with self.tx() as db:
            return db.execute("DELETE FROM webhooks WHERE tenant_id=?", (tenant_id,)).rowcount == 1

    # -- the outbox -------------------------------------------------------------------------

    def add_webhook_delivery(
        self,
        tenant_id: str,
        event_id: str,
        event_type: str,
        payload: str,
        now: float,
        event_key: str | None = None,
    ) -> bool:
        """Queue an event (inside the caller's transaction when there is one). ``event_key``
        makes it once-only (an expiry is announced once); False when that key was queued."""
        with self.tx() as db:
            try:
                db.execute(
                    "INSERT INTO webhook_deliveries (tenant_id, id, event_type, event_key,"
                    " payload, status, attempts, next_attempt_at, created_at)"
                    " VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                    (tenant_id, event_id, event_type, event_key or event_id, payload, now, now),
                )
            except self.integrity_errors:
                return False
            return True

    def claim_webhook_deliveries(
        self,
        now: float,
        lease_s: float,
        limit: int,
        *,
        max_attempts: int,
        retry_after: Callable[[int], float],
        per_tenant: int | None = None,
        busy: Mapping[str, int] | None = None,
        after_tenant: str = "",
    ) -> list[DeliveryRow]:
        """Up to ``limit`` due deliveries, each claimed for this caller alone until
        ``now + lease_s``; the claim counts the attempt and moves ``next_attempt_at`` to the
        lease's end plus ``retry_after(attempts)``, so that an attempt whose worker never
        records it counts as failed (``attempt_abandoned``) and is retried after the back-off,
        not at once. A due row that already had ``max_attempts`` (its last attempt abandoned)
        is marked failed instead. One transaction per row, so that two claimers never hold
        locks on several rows in different orders.

        Fair between tenants: a tenant gets at most ``per_tenant`` claims, less the attempts
        the caller has in flight for it already (``busy``), and tenants take turns: each
        tenant's oldest due row first, tenants in the order of their ids starting after
        ``after_tenant`` (the caller's round-robin cursor, the last tenant it served), then
        each one's second row, and so on. So a tenant with a thousand rows due gets no more of
        a worker's senders than one with a single row, and never holds the others back."""
        cap = limit if per_tenant is None else max(1, per_tenant)
        busy = busy or {}
        full = sorted(t for t, n in busy.items() if n >= cap)
        skip = f" AND tenant_id NOT IN ({', '.join('?' * len(full))})" if full else ""
        candidates = (
            self._db()
            .execute(
                "SELECT tenant_id, id, attempts FROM (SELECT tenant_id, id, attempts,"
                " ROW_NUMBER() OVER (PARTITION BY tenant_id ORDER BY next_attempt_at, id) AS rn"
                " FROM webhook_deliveries WHERE status='pending' AND next_attempt_at<=?"
                f" AND (claimed_until IS NULL OR claimed_until<?){skip}) due WHERE rn<=?"
                " ORDER BY rn, CASE WHEN tenant_id>? THEN 0 ELSE 1 END, tenant_id LIMIT ?",
                (now, now, *full, cap, after_tenant, limit * cap),
            )
            .fetchall()
        )
        due = (
            " AND status='pending' AND next_attempt_at<=?"
            " AND (claimed_until IS NULL OR claimed_until<?)"
        )
        abandoned = "CASE WHEN claimed_until IS NULL THEN last_error ELSE 'attempt_abandoned' END"
        claimed: list[DeliveryRow] = []
        taken: dict[str, int] = {}
        for c in candidates:
            key = (c["tenant_id"], c["id"])
            if len(claimed) >= limit:
                break
            if taken.get(key[0], 0) + busy.get(key[0], 0) >= cap:
                continue
            if int(c["attempts"]) >= max_attempts:
                with self.tx() as db:
                    db.execute(
                        f"UPDATE webhook_deliveries SET status='failed', last_error={abandoned},"
                        " claimed_until=NULL, claim=NULL WHERE tenant_id=? AND id=?"
                        f" AND attempts>=?{due}",
                        (*key, max_attempts, now, now),
                    )
                continue
            token = secrets.token_hex(8)
            retry_at = now + lease_s + retry_after(int(c["attempts"]) + 1)
            with self.tx() as db:
                won = db.execute(
                    "UPDATE webhook_deliveries SET claimed_until=?, claim=?, attempts=attempts+1,"
                    f" next_attempt_at=?, last_error={abandoned}"
                    f" WHERE tenant_id=? AND id=? AND attempts<?{due}",
                    (now + lease_s, token, retry_at, *key, max_attempts, now, now),
                ).rowcount
                if won != 1:
                    continue
                r = db.execute(
                    "SELECT * FROM webhook_deliveries WHERE tenant_id=? AND id=?", key
                ).fetchone()
            claimed.append(_delivery(r))
            taken[key[0]] = taken.get(key[0], 0) + 1
        return claimed

    def finish_webhook_attempt(
        self,
        row: DeliveryRow,
        *,
        status: str,
        next_attempt_at: float,
        status_code: int | None,
        error: str | None,
        now: float,
    ) -> bool:
        """Record an attempt's result; only the claim's holder can (False: the lease had run
        out and another worker claimed the row meanwhile)."""
        with self.tx() as db:
            return (
                db.execute(
                    "UPDATE webhook_deliveries SET status=?, next_attempt_at=?,"
                    " last_status_code=?, last_error=?, claimed_until=NULL, claim=NULL,"
                    " delivered_at=? WHERE tenant_id=? AND id=? AND claim=?",
                    (
                        status,
                        next_attempt_at,
                        status_code,
                        error,
                        now if status == "delivered" else None,
                        row.tenant_id,
                        row.id,
                        row.claim,
                    ),
                ).rowcount
                == 1
            )

    def webhook_deliveries(
        self, tenant_id: str, limit: int, status: str | None = None
    ) -> list[DeliveryRow]:
        """The tenant's delivery log, newest first."""
        sql = "SELECT * FROM webhook_deliveries WHERE tenant_id=?"
        args: tuple[Any, ...] = (tenant_id,)
        if status is not None:
            sql += " AND status=?"
            args += (status,)
        rows = self._db().execute(sql + " ORDER BY created_at DESC, id LIMIT ?", (*args, limit))
        return [_delivery(r) for r in rows]

    def get_webhook_delivery(self, tenant_id: str, event_id: str) -> DeliveryRow | None:
        r = (
            self._db()
            .execute(
                "SELECT * FROM webhook_deliveries WHERE tenant_id=? AND id=?",
                (tenant_id, event_id),
            )
            .fetchone()
        )
        return None if r is None else _delivery(r)

    def redeliver_webhook(
        self, tenant_id: str, event_id: str, now: float, *, min_gap_s: float, max_pending: int
    ) -> tuple[str, float]:
        """Queue a delivered or failed event again, with a fresh round of attempts (same event
        id: a receiver that has it already drops it), within bounds: a delivered event not
        within ``min_gap_s`` of its last delivery, and only while the tenant has fewer than
        ``max_pending`` events pending. The outcome and, for ``too_soon``, the seconds left:
        ``redelivered``, ``unknown``, ``pending``, ``too_soon``, ``backlog``. The check and the
        change are one transaction under a per-tenant lock (PostgreSQL's advisory lock;
        SQLite's one writer), so concurrent calls on any worker cannot pass the cap together."""
        with self.tx() as db:
            self.lock_tenant(f"webhook-redeliver|{tenant_id}")
            r = db.execute(
                "SELECT status, delivered_at FROM webhook_deliveries WHERE tenant_id=? AND id=?",
                (tenant_id, event_id),
            ).fetchone()
            if r is None:
                return "unknown", 0.0
            if r["status"] == "pending":
                return "pending", 0.0
            if r["status"] == "delivered" and r["delivered_at"] is not None:
                left = float(r["delivered_at"]) + min_gap_s - now
                if left > 0:
                    return "too_soon", left
            pending = db.execute(
                "SELECT COUNT(*) AS n FROM (SELECT 1 FROM webhook_deliveries"
                " WHERE tenant_id=? AND status='pending' LIMIT ?) p",
                (tenant_id, max_pending),
            ).fetchone()
            if int(pending["n"]) >= max_pending:
                return "backlog", 0.0
            won = db.execute(
                "UPDATE webhook_deliveries SET status='pending', attempts=0,"
                " next_attempt_at=?, claimed_until=NULL, claim=NULL"
                " WHERE tenant_id=? AND id=? AND status<>'pending'",
                (now, tenant_id, event_id),
            ).rowcount
            return ("redelivered" if won == 1 else "pending"), 0.0

    def prune_webhook_deliveries(self, before: float) -> int:
        with self.tx() as db:
            return int(
                db.execute(
                    "DELETE FROM webhook_deliveries WHERE status<>'pending' AND created_at<?",
                    (before,),
                ).rowcount
            )

    # -- capture links that expired unused ----------------------------------------------------

    def unannounced_expired_links(self, before: float, limit: int) -> list[ExpiredLink]:
        """Links of tenants with a webhook that expired (before ``before``) with no outcome,
        not revoked, their key not revoked, and not yet announced; only those that expired
        after the webhook was set up (an old backlog is not replayed to a new endpoint)."""
        rows = self._db().execute(
            "SELECT l.tenant_id, l.id, l.subject_id, l.flow, l.created_at, l.expires_at"
            " FROM capture_links l JOIN webhooks w ON w.tenant_id = l.tenant_id"
            " LEFT JOIN api_keys k ON k.id = l.key_id AND k.tenant_id = l.tenant_id"
            " WHERE l.outcome IS NULL AND l.revoked_at IS NULL AND k.revoked_at IS NULL"
            " AND l.expiry_announced_at IS NULL AND l.expires_at < ?"
            " AND l.expires_at >= w.created_at"
            " ORDER BY l.expires_at LIMIT ?",
            (before, limit),
        )
        return [
            ExpiredLink(
                r["tenant_id"],
                r["id"],
                r["subject_id"],
                r["flow"],
                r["created_at"],
                r["expires_at"],
            )
            for r in rows
        ]

    def mark_expiry_announced(self, tenant_id: str, link_id: str, now: float) -> bool:
        """True for the one caller that marks it (inside its transaction with the event)."""
        with self.tx() as db:
            return (
                db.execute(
                    "UPDATE capture_links SET expiry_announced_at=? WHERE tenant_id=? AND id=?"
                    " AND expiry_announced_at IS NULL AND outcome IS NULL",
                    (now, tenant_id, link_id),
                ).rowcount
                == 1
            )
