"""Request and response bodies of the tenant's webhook routes (web/routers/webhooks.py). No
body but the answers of ``PUT`` (first set) and ``rotate-secret`` carries the signing secret."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from facegate.web.schemas.common import Out

EVENT_TYPE = r"^capture\.(passed|failed|declined|expired)$"


class WebhookSet(BaseModel):
    """The endpoint and the events it wants (all capture events when left out)."""

    model_config = ConfigDict(strict=True)

    url: str = Field(
        min_length=8,
        max_length=2000,
        description="https URL of your receiver; its host must resolve to public addresses"
        " (the operator may allow http and private hosts: FACEGATE_WEBHOOK_ALLOW_PRIVATE)",
        examples=["https://rp.example/hooks/facegate"],
    )
    events: list[Annotated[str, Field(pattern=EVENT_TYPE)]] | None = Field(
        default=None,
        min_length=1,
        max_length=4,
        description="among capture.passed, capture.failed, capture.declined, capture.expired",
    )


class Webhook(Out):
    url: str
    events: list[str]
    created_at: float
    updated_at: float
    secret: str | None = Field(
        default=None,
        description="whsec_...: the signing secret, in the answer that made it only (first set,"
        " rotate-secret); stored encrypted, never shown again",
    )


class WebhookDeleted(Out):
    deleted: bool


class WebhookDelivery(Out):
    event_id: str = Field(description="evt_...; also the Facegate-Event-Id header")
    event_type: str = Field(examples=["capture.passed"])
    status: str = Field(examples=["pending", "delivered", "failed"])
    attempts: int
    last_status_code: int | None = Field(description="your receiver's last answer, if any")
    last_error: str | None = Field(
        description="why the last attempt failed: http_status, redirect_not_followed, timeout,"
        " tls_error, connect_failed, request_failed, webhook_url_not_allowed,"
        " webhook_url_invalid, webhook_removed, attempt_abandoned, internal_error"
    )
    next_attempt_at: float | None = Field(description="unix time of the next try, if pending")
    created_at: float
    delivered_at: float | None


class WebhookDeliveries(Out):
    deliveries: list[WebhookDelivery] = Field(description="newest first")
