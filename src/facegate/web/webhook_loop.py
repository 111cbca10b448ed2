"""Each worker's webhook delivery loop: every ``FACEGATE_WEBHOOK_POLL_S`` seconds, one pass of
``Webhooks.deliver_due`` in a thread (it waits on the database, never on the event loop, and
never on a receiver: the attempts run in the service's sender threads, each within its
deadline, service/webhook_delivery.py). Every worker of every machine runs one; the store's
claims make sure each attempt is made by one of them (storage/webhooks.py). At shutdown the
attempts in flight may finish (each within its deadline); no new one starts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from anyio import to_thread

from facegate.service.webhooks import WebhookPolicy, Webhooks
from facegate.settings import Settings

log = logging.getLogger(__name__)


def policy_of(settings: Settings) -> WebhookPolicy:
    return WebhookPolicy(
        allow_private=settings.webhook_allow_private,
        timeout_s=settings.webhook_timeout_s,
        max_attempts=settings.webhook_max_attempts,
        backoff_s=settings.webhook_backoff_s,
        poll_s=settings.webhook_poll_s,
    )


async def deliver_forever(webhooks: Webhooks, poll_s: float) -> None:
    failing = False
    while True:
        try:
            busy = await to_thread.run_sync(webhooks.deliver_due, abandon_on_cancel=True)
            failing = False
        except Exception as exc:  # the database away, say: log once, keep trying
            busy = 0
            if not failing:
                log.warning("webhook delivery pass failed: %s", type(exc).__name__)
            failing = True
        if not busy:  # more may be due at once after a full batch
            await asyncio.sleep(poll_s)


@contextlib.asynccontextmanager
async def webhook_deliveries(service: Any, settings: Settings) -> AsyncIterator[None]:
    """Configure the service's webhook policy and run its delivery loop for the app's life
    (nothing for a stand-in service without webhooks, as some tests pass). The loop works on
    ``service.webhooks`` itself: it is the worker's own machinery, not a caller's request."""
    webhooks = getattr(service, "webhooks", None)
    if not isinstance(webhooks, Webhooks):
        yield
        return
    webhooks.policy = policy_of(settings)
    if settings.webhook_allow_private:
        log.warning("FACEGATE_WEBHOOK_ALLOW_PRIVATE: webhooks may target http and private hosts")
    task = asyncio.create_task(deliver_forever(webhooks, settings.webhook_poll_s))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await to_thread.run_sync(webhooks.close)
