"""The webhook outbox and its delivery: events queued in the transaction that makes them
(``emit``), and each worker's delivery passes (``WebhookDelivery.deliver_due``).

A pass never waits on a receiver. It claims at most as many due rows as it has free senders
(``batch``), hands each to a sender thread, and returns; each sender checks the endpoint again
(DNS included), posts within the attempt's total deadline (service/webhook_sender.py) and
records its own result as soon as it has one. So a receiver that stalls, a slow resolver or a
row that cannot be sent costs one sender for at most ``timeout_s``, never another tenant's
delivery, the loop or the expiry sweep; and any exception of one row is that row's failed
attempt (``internal_error``), logged by class name only.

Senders are shared fairly: one tenant has at most ``WebhookPolicy.tenant_cap`` attempts in
flight in a worker (2 of the default 8), and the claim serves tenants in turn (each one's
oldest due row, round-robin from the tenant served last; storage/webhooks.py). So a tenant
with thousands of events due to a receiver that answers just before the deadline holds a
quarter of a worker's senders, and another tenant's event is claimed at the next pass.

A claim counts the attempt and moves ``next_attempt_at`` past the lease and the back-off
(storage/webhooks.py): a worker that dies mid-attempt leaves a row that is retried after that
back-off, as a failed attempt, not re-sent at once; a row whose last attempt was lost so is
marked failed. Payloads hold ids, the event type, the link's status, reason codes and times:
never an image, an embedding or a score.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any

from facegate.errors import FacegateError
from facegate.protection.crypto import open_sealed, seal
from facegate.protection.tenant import TenantSecrets
from facegate.service.context import ServiceContext
from facegate.service.webhook_sender import AttemptResult, post, signed_headers
from facegate.service.webhook_targets import check_url, resolve
from facegate.storage.webhooks import KEEP_S, DeliveryRow, WebhookRow

log = logging.getLogger(__name__)

CAPTURE_EVENTS = {
    "passed": "capture.passed",
    "failed": "capture.failed",
    "declined": "capture.declined",
    "expired": "capture.expired",
}
EVENT_TYPES = tuple(CAPTURE_EVENTS.values())


@dataclass(frozen=True)
class WebhookPolicy:
    """The operator's delivery settings (``FACEGATE_WEBHOOK_*``, docs/configuration.md). With
    the defaults, 8 attempts are spread over ~15-18 hours: 1, 4, 16, 64 minutes, ~4.3 h, 6 h,
    6 h (each shortened by up to a fifth at random, so that retries of many events spread)."""

    allow_private: bool = False
    timeout_s: float = 10.0  # an attempt's total deadline: DNS, connect, TLS, request, answer
    max_attempts: int = 8
    backoff_s: float = 60.0  # the first retry's delay
    backoff_factor: float = 4.0
    backoff_cap_s: float = 6 * 3600.0
    poll_s: float = 2.0  # each worker's delivery loop looks for due events this often
    batch: int = 8  # attempts one worker has in flight at most
    # of which one tenant's at most (0: a quarter of ``batch``, at least 1; 2 of the default 8)
    per_tenant: int = 0
    expiry_grace_s: float = 120.0  # a capture in flight at its link's expiry may still finish
    sweep_s: float = 30.0  # how often a worker looks for links that expired unused

    def delay(self, attempts: int) -> float:
        """Seconds before the next attempt, after ``attempts`` failed ones."""
        base = self.backoff_s * self.backoff_factor ** max(0, attempts - 1)
        return min(self.backoff_cap_s, base) * random.uniform(0.8, 1.0)

    @property
    def tenant_cap(self) -> int:
        """Attempts of one tenant a worker has in flight at most: so a tenant whose receiver
        answers just before the deadline, with a thousand events due, holds a quarter of the
        worker's senders, and every other tenant's event goes out at the next pass."""
        return max(1, min(self.batch, self.per_tenant or self.batch // 4))

    @property
    def lease_s(self) -> float:
        """How long a claim holds. An attempt ends by its deadline (``timeout_s``, enforced by
        shutting its socket); the rest is room to open the endpoint and record the result on a
        slow database. Only a worker that died or hung outlives it; its row is then retried
        after the back-off (the claim moved ``next_attempt_at``), not at once."""
        return self.timeout_s + 30.0


def config_aad(tenant_id: str) -> bytes:
    return f"webhook|{tenant_id}".encode()


def open_config(keys: TenantSecrets, row: WebhookRow) -> dict[str, Any]:
    """The sealed endpoint: url, secret, and after a rotation previous_secret/previous_until."""
    config: dict[str, Any] = json.loads(
        open_sealed(keys.dek, row.sealed_config, config_aad(row.tenant_id))
    )
    return config


def seal_config(keys: TenantSecrets, config: dict[str, Any]) -> bytes:
    return seal(keys.dek, json.dumps(config).encode(), config_aad(keys.tenant_id))


def emit(
    ctx: ServiceContext,
    tenant_id: str,
    event_type: str,
    data: dict[str, Any],
    *,
    event_key: str | None = None,
) -> str | None:
    """Queue an event for the tenant's endpoint, if it has one that wants this type; call it
    inside the transaction that makes the event. Returns the event id (None: not queued)."""
    hook = ctx.store.get_webhook(tenant_id)
    if hook is None or event_type not in hook.events:
        return None
    now = ctx.now()
    event_id = "evt_" + secrets.token_hex(12)
    body = {"id": event_id, "type": event_type, "created_at": now, "data": data}
    payload = json.dumps(body, separators=(",", ":"), sort_keys=True)
    if not ctx.store.add_webhook_delivery(tenant_id, event_id, event_type, payload, now, event_key):
        return None
    return event_id


def emit_capture_outcome(
    ctx: ServiceContext, tenant_id: str, link_id: str, status: str, result: dict[str, Any] | None
) -> str | None:
    """The event of a capture link's outcome: what ``GET /v1/capture-links/{id}`` answers."""
    link = ctx.store.get_capture_link(tenant_id, link_id)
    if link is None or status not in CAPTURE_EVENTS:
        return None
    data = {
        "capture_id": link.id,
        "status": status,
        "flow": link.flow,
        "subject_id": link.subject_id,  # the relying party's own id for the person
        "created_at": link.created_at,
        "expires_at": link.expires_at,
        "completed_at": None if status == "expired" else ctx.now(),
        "result": result,  # live, match, enrolled, reason codes (no score, no biometric data)
    }
    key = f"capture.expired|{link_id}" if status == "expired" else None
    return emit(ctx, tenant_id, CAPTURE_EVENTS[status], data, event_key=key)


class WebhookDelivery:
    """A worker's delivery machinery: the periodic expiry sweep and the sender threads."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.policy = WebhookPolicy()
        self._last_sweep = 0.0
        self._lock = threading.RLock()  # a done callback may run at once, under it
        self._pool: ThreadPoolExecutor | None = None
        self._senders = 0
        self._inflight: set[Future[None]] = set()
        self._busy: dict[str, int] = {}  # attempts in flight per tenant (this worker's)
        self._cursor = ""  # the tenant served last: the next pass starts after it
        self._closed = False

    def sweep_expired(self, now: float | None = None) -> int:
        """Announce capture links that expired unused (``capture.expired``), once each: the
        mark and the event are one transaction, and only one worker's mark succeeds."""
        now = self.ctx.now() if now is None else now
        store = self.ctx.store
        announced = 0
        for link in store.unannounced_expired_links(now - self.policy.expiry_grace_s, 100):
            with store.tx():
                if store.mark_expiry_announced(link.tenant_id, link.id, now):
                    announced += (
                        emit_capture_outcome(self.ctx, link.tenant_id, link.id, "expired", None)
                        is not None
                    )
        return announced

    @property
    def in_flight(self) -> int:
        with self._lock:
            self._inflight = {f for f in self._inflight if not f.done()}
            return len(self._inflight)

    def deliver_due(self) -> int:
        """One pass of a worker's loop: the periodic sweep, then as many due deliveries as
        there are free senders, claimed for this worker alone and handed to the senders
        (which record their results themselves). Returns the attempts started."""
        now = self.ctx.now()
        if now - self._last_sweep >= self.policy.sweep_s:
            self._last_sweep = now
            self.sweep_expired(now)
            self.ctx.store.prune_webhook_deliveries(now - KEEP_S)
        free = (self._senders or self.policy.batch) - self.in_flight
        if free <= 0 or self._closed:
            return 0
        policy = self.policy
        with self._lock:
            busy, cursor = dict(self._busy), self._cursor
        rows = self.ctx.store.claim_webhook_deliveries(
            now,
            policy.lease_s,
            free,
            max_attempts=policy.max_attempts,
            retry_after=policy.delay,
            per_tenant=policy.tenant_cap,
            busy=busy,
            after_tenant=cursor,
        )
        with self._lock:
            if self._closed:  # shutting down: the claims run out, then back-off applies
                return 0
            if self._pool is None:
                self._senders = policy.batch
                self._pool = ThreadPoolExecutor(self._senders, thread_name_prefix="webhook")
            for row in rows:
                self._busy[row.tenant_id] = self._busy.get(row.tenant_id, 0) + 1
                future = self._pool.submit(self._attempt, row)
                future.add_done_callback(functools.partial(self._done, row.tenant_id))
                self._inflight.add(future)
            if rows:
                self._cursor = rows[-1].tenant_id
        return len(rows)

    def _done(self, tenant_id: str, _: Future[None]) -> None:
        """An attempt ended (or was cancelled at shutdown): its tenant's sender is free."""
        with self._lock:
            left = self._busy.get(tenant_id, 0) - 1
            if left > 0:
                self._busy[tenant_id] = left
            else:
                self._busy.pop(tenant_id, None)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait for the attempts in flight (tests, shutdown); True when none is left."""
        with self._lock:
            pending = set(self._inflight)
        return not wait_futures(pending, timeout=timeout_s).not_done

    def close(self, timeout_s: float | None = None) -> None:
        """Let the attempts in flight end (each within its deadline) and stop the senders, for
        good: a pass still running (the loop's thread is abandoned when its task is cancelled)
        claims nothing more and never starts a new pool after this."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        self.wait_idle(self.policy.timeout_s + 1.0 if timeout_s is None else timeout_s)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # -- one attempt, in a sender thread ----------------------------------------------------

    def _attempt(self, row: DeliveryRow) -> None:
        try:
            result = self._send(row)
        except Exception as exc:  # one row never breaks another's delivery
            log.warning(
                "webhook delivery %s of tenant %s: attempt %d raised %s",
                row.id,
                row.tenant_id,
                row.attempts,
                type(exc).__name__,
            )
            result = AttemptResult(None, "internal_error")
        try:
            self._finish(row, result)
        except Exception as exc:  # the database away: the lease runs out, back-off applies
            log.warning(
                "webhook delivery %s of tenant %s: result not recorded (%s)",
                row.id,
                row.tenant_id,
                type(exc).__name__,
            )

    def _send(self, row: DeliveryRow) -> AttemptResult:
        """Open the endpoint, check it again (DNS within the deadline), sign and post."""
        ctx, policy = self.ctx, self.policy
        started = time.monotonic()
        hook = ctx.store.get_webhook(row.tenant_id)
        if hook is None:
            return AttemptResult(None, "webhook_removed")
        try:
            config = open_config(ctx.secrets_of(ctx.tenant(row.tenant_id)), hook)
            resolver = functools.partial(resolve, timeout_s=policy.timeout_s)
            target = check_url(config["url"], allow_private=policy.allow_private, resolver=resolver)
        except TimeoutError:  # the name did not resolve in time
            return AttemptResult(None, "timeout")
        except FacegateError as exc:  # refused now: say so; anything else is ours to look at
            code = exc.code if exc.code.startswith("webhook_url_") else "internal_error"
            return AttemptResult(None, code)
        signing = [config["secret"]]
        if config.get("previous_secret") and float(config.get("previous_until", 0)) > ctx.now():
            signing.append(config["previous_secret"])
        body = row.payload.encode()
        headers = signed_headers(signing, row.id, int(ctx.now()), body)
        left = policy.timeout_s - (time.monotonic() - started)
        if left <= 0:
            return AttemptResult(None, "timeout")
        return post(target, body, headers, left)

    def _finish(self, row: DeliveryRow, result: AttemptResult) -> None:
        now = self.ctx.now()
        if result.delivered:
            status, next_at = "delivered", now
        elif result.error == "webhook_removed" or row.attempts >= self.policy.max_attempts:
            status, next_at = "failed", now
        else:
            status, next_at = "pending", now + self.policy.delay(row.attempts)
        if not result.delivered:
            # ids and codes only: never the URL (it may carry a token) or the secret
            log.warning(
                "webhook delivery %s of tenant %s: attempt %d failed (%s%s)",
                row.id,
                row.tenant_id,
                row.attempts,
                result.error,
                f" {result.status_code}" if result.status_code is not None else "",
            )
        self.ctx.store.finish_webhook_attempt(
            row,
            status=status,
            next_attempt_at=next_at,
            status_code=result.status_code,
            error=result.error,
            now=now,
        )
