"""Signed webhooks per tenant: a capture link's outcome pushed to the relying party's back end
instead of polled (``GET /v1/capture-links/{id}``).

A tenant admin sets one endpoint (``PUT /v1/tenant/webhook``); the server makes its signing
secret and shows it once. The URL and the secret are kept only sealed under the tenant's data
key (the URL may carry a token of the receiver's own), so the database, the audit log and the
logs never hold either. Each event is a row of an outbox written in the transaction that makes
it (``emit``), and every worker's delivery loop (``deliver_due``) claims due rows one by one with
a lease (storage/webhooks.py), posts them signed (service/webhook_sender.py), and retries
failures with exponential back-off and jitter up to ``max_attempts``, then marks them
``failed``; the tenant reads the log and may redeliver. Payloads hold ids, the event type, the
link's status, reason codes and times: never an image, an embedding or a score.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from facegate.errors import (
    ConflictError,
    FacegateError,
    ForbiddenError,
    InputError,
    NotFoundError,
)
from facegate.protection.crypto import open_sealed, seal
from facegate.protection.tenant import TenantSecrets
from facegate.service.context import Caller, ServiceContext
from facegate.service.webhook_sender import AttemptResult, check_url, post, signed_headers
from facegate.storage.base import TenantRow
from facegate.storage.webhooks import KEEP_S, DeliveryRow, WebhookRow

log = logging.getLogger(__name__)

CAPTURE_EVENTS = {
    "passed": "capture.passed",
    "failed": "capture.failed",
    "declined": "capture.declined",
    "expired": "capture.expired",
}
EVENT_TYPES = tuple(CAPTURE_EVENTS.values())
SECRET_PREFIX = "whsec_"
PREVIOUS_SECRET_TTL_S = 86400.0  # after a rotation, the old secret also signs for a day
DELIVERY_STATUSES = ("pending", "delivered", "failed")


@dataclass(frozen=True)
class WebhookPolicy:
    """The operator's delivery settings (``FACEGATE_WEBHOOK_*``, docs/configuration.md). With
    the defaults, 8 attempts are spread over ~15-18 hours: 1, 4, 16, 64 minutes, ~4.3 h, 6 h,
    6 h (each shortened by up to a fifth at random, so that retries of many events spread)."""

    allow_private: bool = False
    timeout_s: float = 10.0
    max_attempts: int = 8
    backoff_s: float = 60.0  # the first retry's delay
    backoff_factor: float = 4.0
    backoff_cap_s: float = 6 * 3600.0
    poll_s: float = 2.0  # each worker's delivery loop looks for due events this often
    batch: int = 8  # attempts one worker makes at once
    expiry_grace_s: float = 120.0  # a capture in flight at its link's expiry may still finish
    sweep_s: float = 30.0  # how often a worker looks for links that expired unused

    def delay(self, attempts: int) -> float:
        """Seconds before the next attempt, after ``attempts`` failed ones."""
        base = self.backoff_s * self.backoff_factor ** max(0, attempts - 1)
        return min(self.backoff_cap_s, base) * random.uniform(0.8, 1.0)

    @property
    def lease_s(self) -> float:
        """How long a claim holds: the attempt's DNS, connect and answer, with room to spare."""
        return 3 * self.timeout_s + 30.0


def config_aad(tenant_id: str) -> bytes:
    return f"webhook|{tenant_id}".encode()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def open_config(keys: TenantSecrets, row: WebhookRow) -> dict[str, Any]:
    """The sealed endpoint: url, secret, and after a rotation previous_secret/previous_until."""
    config: dict[str, Any] = json.loads(
        open_sealed(keys.dek, row.sealed_config, config_aad(row.tenant_id))
    )
    return config


def seal_config(keys: TenantSecrets, config: dict[str, Any]) -> bytes:
    return seal(keys.dek, json.dumps(config).encode(), config_aad(keys.tenant_id))


def reseal_config(ctx: ServiceContext, old: TenantSecrets, new: TenantSecrets) -> None:
    """A data-key renewal (``facegate keys renew-transform``) re-seals the endpoint too, in its
    transaction; without it the secret would no longer open."""
    row = ctx.store.get_webhook(old.tenant_id)
    if row is not None:
        config = open_config(old, row)
        sealed = seal_config(new, config)
        ctx.store.put_webhook(
            WebhookRow(row.tenant_id, sealed, row.events, row.created_at, row.updated_at)
        )


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


def delivery_view(d: DeliveryRow) -> dict[str, Any]:
    return {
        "event_id": d.id,
        "event_type": d.event_type,
        "status": d.status,
        "attempts": d.attempts,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "next_attempt_at": d.next_attempt_at if d.status == "pending" else None,
        "created_at": d.created_at,
        "delivered_at": d.delivered_at,
    }


class Webhooks:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.policy = WebhookPolicy()
        self._last_sweep = 0.0

    # -- the tenant admin's endpoint ------------------------------------------------------

    def _admin(self, caller: Caller) -> TenantRow:
        if "admin" not in caller.roles:
            raise ForbiddenError("this key needs the admin role")
        return self.ctx.tenant(caller.tenant_id)

    def _view(self, row: WebhookRow, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": config["url"],
            "events": list(row.events),
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }

    def put(self, caller: Caller, url: str, events: list[str] | None) -> dict[str, Any]:
        """Set the endpoint (and the events it wants; default all). The secret is made on the
        first set and answered then only; later changes keep it (``rotate_secret`` renews it)."""
        tenant = self._admin(caller)
        wanted = tuple(dict.fromkeys(events)) if events else EVENT_TYPES
        unknown = [e for e in wanted if e not in EVENT_TYPES]
        if unknown:
            raise InputError(f"events must be among {list(EVENT_TYPES)}", code="bad_request")
        target = check_url(url, allow_private=self.policy.allow_private)
        keys = self.ctx.secrets_of(tenant)
        now = self.ctx.now()
        with self.ctx.store.tx():
            old = self.ctx.store.get_webhook(tenant.id)
            config = open_config(keys, old) if old is not None else {"secret": new_secret()}
            config["url"] = url
            row = WebhookRow(
                tenant.id,
                seal_config(keys, config),
                wanted,
                old.created_at if old is not None else now,
                now,
            )
            self.ctx.store.put_webhook(row)
            self.ctx.audit(
                caller,
                "webhook.configure",
                "ok",
                details={"host": target.host, "events": list(wanted), "created": old is None},
            )
        out = self._view(row, config)
        if old is None:
            out["secret"] = config["secret"]
        return out

    def view(self, caller: Caller) -> dict[str, Any]:
        tenant = self._admin(caller)
        row = self.ctx.store.get_webhook(tenant.id)
        if row is None:
            raise NotFoundError("no webhook is set for this tenant", code="no_webhook")
        return self._view(row, open_config(self.ctx.secrets_of(tenant), row))

    def delete(self, caller: Caller) -> dict[str, Any]:
        """Remove the endpoint; events not yet delivered are marked failed when next due."""
        tenant = self._admin(caller)
        with self.ctx.store.tx():
            if not self.ctx.store.delete_webhook(tenant.id):
                raise NotFoundError("no webhook is set for this tenant", code="no_webhook")
            self.ctx.audit(caller, "webhook.delete", "ok")
        return {"deleted": True}

    def rotate_secret(self, caller: Caller) -> dict[str, Any]:
        """A new secret, answered once; the previous one also signs for a day (a second
        ``v1=`` in ``Facegate-Signature``), so the receiver can switch without losing events."""
        tenant = self._admin(caller)
        keys = self.ctx.secrets_of(tenant)
        now = self.ctx.now()
        with self.ctx.store.tx():
            old = self.ctx.store.get_webhook(tenant.id)
            if old is None:
                raise NotFoundError("no webhook is set for this tenant", code="no_webhook")
            config = open_config(keys, old)
            config["previous_secret"] = config["secret"]
            config["previous_until"] = now + PREVIOUS_SECRET_TTL_S
            config["secret"] = new_secret()
            row = WebhookRow(tenant.id, seal_config(keys, config), old.events, old.created_at, now)
            self.ctx.store.put_webhook(row)
            self.ctx.audit(caller, "webhook.rotate_secret", "ok")
        return {**self._view(row, config), "secret": config["secret"]}

    def deliveries(self, caller: Caller, limit: int, status: str | None) -> dict[str, Any]:
        tenant = self._admin(caller)
        if status is not None and status not in DELIVERY_STATUSES:
            raise InputError(f"status must be among {list(DELIVERY_STATUSES)}", code="bad_request")
        rows = self.ctx.store.webhook_deliveries(tenant.id, max(1, min(limit, 200)), status)
        return {"deliveries": [delivery_view(d) for d in rows]}

    def redeliver(self, caller: Caller, event_id: str) -> dict[str, Any]:
        """Send a delivered or failed event again (same event id), with a fresh set of tries."""
        tenant = self._admin(caller)
        store = self.ctx.store
        if store.get_webhook_delivery(tenant.id, event_id) is None:
            raise NotFoundError("no such webhook delivery")
        if not store.redeliver_webhook(tenant.id, event_id, self.ctx.now()):
            raise ConflictError("this delivery is still pending", code="webhook_delivery_pending")
        self.ctx.audit(caller, "webhook.redeliver", "ok", details={"event_id": event_id})
        row = store.get_webhook_delivery(tenant.id, event_id)
        assert row is not None
        return delivery_view(row)

    # -- the delivery loop's work ---------------------------------------------------------

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

    def deliver_due(self) -> int:
        """One pass of a worker's loop: the periodic sweep, then up to ``batch`` due deliveries,
        claimed for this worker alone and posted at once. Returns the attempts made."""
        now = self.ctx.now()
        if now - self._last_sweep >= self.policy.sweep_s:
            self._last_sweep = now
            self.sweep_expired(now)
            self.ctx.store.prune_webhook_deliveries(now - KEEP_S)
        rows = self.ctx.store.claim_webhook_deliveries(now, self.policy.lease_s, self.policy.batch)
        if not rows:
            return 0
        prepared = [self._prepare(r) for r in rows]
        with ThreadPoolExecutor(max_workers=len(rows)) as pool:
            results = list(pool.map(self._send, prepared))
        for row, result in zip(rows, results, strict=True):
            self._finish(row, result)
        return len(rows)

    def _prepare(self, row: DeliveryRow) -> tuple[Any, bytes, dict[str, str]] | AttemptResult:
        """(checked target, body, signed headers), or the attempt's failure before sending."""
        ctx = self.ctx
        try:
            hook = ctx.store.get_webhook(row.tenant_id)
            if hook is None:
                return AttemptResult(None, "webhook_removed")
            config = open_config(ctx.secrets_of(ctx.tenant(row.tenant_id)), hook)
            target = check_url(config["url"], allow_private=self.policy.allow_private)
        except InputError as exc:  # the name no longer resolves, or resolves inside
            return AttemptResult(None, exc.code)
        except FacegateError as exc:  # the config does not open (a key problem): say so
            return AttemptResult(None, exc.code)
        signing = [config["secret"]]
        if config.get("previous_secret") and float(config.get("previous_until", 0)) > ctx.now():
            signing.append(config["previous_secret"])
        body = row.payload.encode()
        return target, body, signed_headers(signing, row.id, int(ctx.now()), body)

    def _send(self, prepared: tuple[Any, bytes, dict[str, str]] | AttemptResult) -> AttemptResult:
        if isinstance(prepared, AttemptResult):
            return prepared
        target, body, headers = prepared
        return post(target, body, headers, self.policy.timeout_s)

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
