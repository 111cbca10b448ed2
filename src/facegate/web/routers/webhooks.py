"""The tenant's signed webhooks (admin only): the endpoint, its secret, the delivery log.
docs/webhooks.md says what is sent and how a receiver checks it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from facegate.web.deps import AdminDep, ServiceDep
from facegate.web.problems import problem_responses
from facegate.web.routers import Router
from facegate.web.schemas.webhooks import (
    Webhook,
    WebhookDeleted,
    WebhookDeliveries,
    WebhookDelivery,
    WebhookSet,
)

router = Router(tags=["webhooks"], responses=problem_responses(401, 403, 429))
EVENT_ID = r"^evt_[0-9a-f]{24}$"


@router.put("/v1/tenant/webhook", response_model=Webhook, responses=problem_responses(400))
def webhook_set(caller: AdminDep, svc: ServiceDep, body: WebhookSet) -> dict[str, Any]:
    """Set the endpoint that capture outcomes are posted to. The first time, the answer holds
    the signing secret (shown once); later calls change the URL or events and keep it."""
    return svc.set_webhook(caller, body.url, body.events)


@router.get("/v1/tenant/webhook", response_model=Webhook, responses=problem_responses(404))
def webhook_get(caller: AdminDep, svc: ServiceDep) -> dict[str, Any]:
    """The endpoint and its events (never the secret)."""
    return svc.webhook_view(caller)


@router.delete(
    "/v1/tenant/webhook", response_model=WebhookDeleted, responses=problem_responses(404)
)
def webhook_delete(caller: AdminDep, svc: ServiceDep) -> dict[str, Any]:
    """Stop sending: events not yet delivered are marked failed (``webhook_removed``)."""
    return svc.delete_webhook(caller)


@router.post(
    "/v1/tenant/webhook/rotate-secret", response_model=Webhook, responses=problem_responses(404)
)
def webhook_rotate(caller: AdminDep, svc: ServiceDep) -> dict[str, Any]:
    """A new signing secret (shown once); for a day the old one also signs each event. Only one
    previous secret is kept: a second rotation within the day ends the first one's grace."""
    return svc.rotate_webhook_secret(caller)


@router.get(
    "/v1/tenant/webhook-deliveries",
    response_model=WebhookDeliveries,
    responses=problem_responses(400),
)
def webhook_deliveries(
    caller: AdminDep,
    svc: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    status: Annotated[str | None, Query(pattern=r"^(pending|delivered|failed)$")] = None,
) -> dict[str, Any]:
    """The delivery log, newest first: each event's status, attempts, last answer or error, and
    when it is tried next."""
    return svc.webhook_deliveries(caller, limit, status)


@router.post(
    "/v1/tenant/webhook-deliveries/{event_id}/redeliver",
    response_model=WebhookDelivery,
    responses=problem_responses(400, 404, 409),
)
def webhook_redeliver(
    caller: AdminDep,
    svc: ServiceDep,
    event_id: Annotated[str, Path(pattern=EVENT_ID)],
) -> dict[str, Any]:
    """Send a delivered or failed event again, with the same event id and a fresh set of
    attempts (409 ``webhook_delivery_pending`` while it is still being tried; 429
    ``webhook_redeliver_too_soon`` within 10 minutes of its last delivery, 429
    ``webhook_redeliver_backlog`` while 100 of the tenant's events are pending)."""
    return svc.redeliver_webhook(caller, event_id)
