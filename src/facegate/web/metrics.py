"""Prometheus metrics at ``GET /metrics`` (prometheus-client): requests by route template and
status, request latency, analyses waiting for the worker's engine, and the service's audited
events (verifications by outcome, liveness verdicts by reason, locks, quarantines).

Labels are route templates, statuses, actions and reason codes: never a subject, key, address
or score. Each worker process counts its own requests; set ``PROMETHEUS_MULTIPROC_DIR`` (an empty
folder, before start) and prometheus-client aggregates all workers' counts in every scrape.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "facegate_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY = Histogram(
    "facegate_request_duration_seconds",
    "time from request to the end of the answer",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT = Gauge(
    "facegate_requests_in_flight", "requests being answered by this worker", multiprocess_mode="sum"
)
EVENTS = Counter(
    "facegate_events_total",
    "audited service events: verify match/no_match, liveness live/not_live, locks, ...",
    ["action", "outcome"],
)
LIVENESS_REASONS = Counter(
    "facegate_liveness_reasons_total", "reasons of liveness verdicts that were not live", ["reason"]
)


def observe_event(action: str, outcome: str, reasons: list[str]) -> None:
    """The service's audit observer (``ServiceContext.observers``)."""
    EVENTS.labels(action, outcome).inc()
    if action.startswith("liveness") and outcome != "live":
        for code in reasons:
            LIVENESS_REASONS.labels(code).inc()


class Metrics:
    """ASGI middleware: count and time every HTTP request by its route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        IN_FLIGHT.inc()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            IN_FLIGHT.dec()
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(route).observe(time.perf_counter() - started)


def metrics_endpoint(request: Request) -> Response:
    """Prometheus text; all workers' counts when ``PROMETHEUS_MULTIPROC_DIR`` is set."""
    registry: Any = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    body = generate_latest(registry) if registry is not None else generate_latest()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
