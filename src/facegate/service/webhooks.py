"""Signed webhooks per tenant: a capture link's outcome pushed to the relying party's back end
instead of polled (``GET /v1/capture-links/{id}``).

A tenant admin sets one endpoint (``PUT /v1/tenant/webhook``); the server makes its signing
secret and shows it once. The URL and the secret are kept only sealed under the tenant's data
key (the URL may carry a token of the receiver's own), so the database, the audit log and the
logs never hold either. Each event is a row of an outbox written in the transaction that makes
it (``emit``), and every worker's delivery loop (``deliver_due``, service/webhook_delivery.py)
claims due rows one by one with a lease (storage/webhooks.py), posts them signed, each within a
total deadline (service/webhook_sender.py), and retries failures with exponential back-off and
jitter up to ``max_attempts``, then marks them ``failed``; the tenant reads the log and may
redeliver. The URL is checked against the SSRF filter when set and at every attempt
(service/webhook_targets.py). Payloads hold ids, the event type, the link's status, reason
codes and times: never an image, an embedding or a score.
"""

from __future__ import annotations

import functools
import math
import secrets
from typing import Any

from facegate.errors import (
    ConflictError,
    ForbiddenError,
    InputError,
    NotFoundError,
    RateLimitedError,
)
from facegate.protection.tenant import TenantSecrets
from facegate.service.context import Caller, ServiceContext
from facegate.service.sealed_writes import keys_for_write
from facegate.service.webhook_delivery import (
    CAPTURE_EVENTS,
    EVENT_TYPES,
    WebhookDelivery,
    WebhookPolicy,
    emit,
    emit_capture_outcome,
    open_config,
    seal_config,
)
from facegate.service.webhook_targets import check_url, resolve
from facegate.storage.base import TenantRow
from facegate.storage.webhooks import DeliveryRow, WebhookRow

__all__ = [
    "CAPTURE_EVENTS",
    "EVENT_TYPES",
    "WebhookPolicy",
    "Webhooks",
    "emit",
    "emit_capture_outcome",
    "reseal_config",
]

SECRET_PREFIX = "whsec_"
PREVIOUS_SECRET_TTL_S = 86400.0  # after a rotation, the old secret also signs for a day
DELIVERY_STATUSES = ("pending", "delivered", "failed")
REDELIVER_GAP_S = 600.0  # a delivered event may be redelivered once per 10 minutes
REDELIVER_MAX_PENDING = 100  # no redelivery while the tenant has this many events pending


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def reseal_config(ctx: ServiceContext, old: TenantSecrets, new: TenantSecrets) -> None:
    """A data-key renewal (``keys renew-transform``) or rotation (``keys rotate-data-key``)
    re-seals the endpoint too, in its transaction; without it the secret would no longer open."""
    row = ctx.store.get_webhook(old.tenant_id)
    if row is not None:
        config = open_config(old, row)
        sealed = seal_config(new, config)
        ctx.store.put_webhook(
            WebhookRow(
                row.tenant_id, sealed, row.events, row.created_at, row.updated_at, new.dek_version
            )
        )


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


class Webhooks(WebhookDelivery):
    """The tenant admin's side; the delivery loop's is ``WebhookDelivery``."""

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
        resolver = functools.partial(resolve, timeout_s=self.policy.timeout_s)
        try:
            target = check_url(url, allow_private=self.policy.allow_private, resolver=resolver)
        except TimeoutError:  # a slow name is refused like one that does not resolve
            raise InputError(
                "the webhook host does not resolve, or resolves to an address that is not"
                " public (loopback, private, link-local, reserved)",
                code="webhook_url_not_allowed",
            ) from None
        now = self.ctx.now()
        with self.ctx.store.tx():
            keys = keys_for_write(self.ctx, tenant.id)  # current keys (a rotation may switch)
            old = self.ctx.store.get_webhook(tenant.id)
            config = open_config(keys, old) if old is not None else {"secret": new_secret()}
            config["url"] = url
            row = WebhookRow(
                tenant.id,
                seal_config(keys, config),
                wanted,
                old.created_at if old is not None else now,
                now,
                keys.dek_version,
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
        ``v1=`` in ``Facegate-Signature``), so the receiver can switch without losing events.
        At most one previous secret is kept: a second rotation within that day makes the
        secret it replaces the previous one and ends the older one's grace at once (three
        secrets in play would mean the receiver cannot tell which one leaked; the audit record
        says ``ended_grace``)."""
        tenant = self._admin(caller)
        now = self.ctx.now()
        with self.ctx.store.tx():
            keys = keys_for_write(self.ctx, tenant.id)  # current keys (a rotation may switch)
            old = self.ctx.store.get_webhook(tenant.id)
            if old is None:
                raise NotFoundError("no webhook is set for this tenant", code="no_webhook")
            config = open_config(keys, old)
            ended = bool(config.get("previous_secret")) and (
                float(config.get("previous_until", 0)) > now
            )
            config["previous_secret"] = config["secret"]
            config["previous_until"] = now + PREVIOUS_SECRET_TTL_S
            config["secret"] = new_secret()
            sealed = seal_config(keys, config)
            row = WebhookRow(tenant.id, sealed, old.events, old.created_at, now, keys.dek_version)
            self.ctx.store.put_webhook(row)
            self.ctx.audit(caller, "webhook.rotate_secret", "ok", details={"ended_grace": ended})
        return {**self._view(row, config), "secret": config["secret"]}

    def deliveries(self, caller: Caller, limit: int, status: str | None) -> dict[str, Any]:
        tenant = self._admin(caller)
        if status is not None and status not in DELIVERY_STATUSES:
            raise InputError(f"status must be among {list(DELIVERY_STATUSES)}", code="bad_request")
        rows = self.ctx.store.webhook_deliveries(tenant.id, max(1, min(limit, 200)), status)
        return {"deliveries": [delivery_view(d) for d in rows]}

    def redeliver(self, caller: Caller, event_id: str) -> dict[str, Any]:
        """Send a delivered or failed event again (same event id), with a fresh set of tries;
        bounded, so that redelivery cannot become a way to keep senders busy: a delivered
        event once per ``REDELIVER_GAP_S`` (429 ``webhook_redeliver_too_soon``), and none
        while the tenant has ``REDELIVER_MAX_PENDING`` events pending (429
        ``webhook_redeliver_backlog``). A failed event has no gap: it failed only after its
        attempts and their back-off (or its webhook's removal, which sends nothing)."""
        tenant = self._admin(caller)
        store = self.ctx.store
        outcome, wait = store.redeliver_webhook(
            tenant.id,
            event_id,
            self.ctx.now(),
            min_gap_s=REDELIVER_GAP_S,
            max_pending=REDELIVER_MAX_PENDING,
        )
        if outcome == "unknown":
            raise NotFoundError("no such webhook delivery", code="no_webhook_delivery")
        if outcome == "pending":
            raise ConflictError("this delivery is still pending", code="webhook_delivery_pending")
        if outcome == "too_soon":
            raise RateLimitedError(
                f"this event was delivered less than {int(REDELIVER_GAP_S // 60)} minutes ago",
                code="webhook_redeliver_too_soon",
                retry_after_s=max(1, math.ceil(wait)),
            )
        if outcome == "backlog":
            raise RateLimitedError(
                f"this tenant has {REDELIVER_MAX_PENDING} or more webhook deliveries pending;"
                " redeliver once they are sent",
                code="webhook_redeliver_backlog",
                retry_after_s=60,
            )
        self.ctx.audit(caller, "webhook.redeliver", "ok", details={"event_id": event_id})
        row = store.get_webhook_delivery(tenant.id, event_id)
        assert row is not None
        return delivery_view(row)
