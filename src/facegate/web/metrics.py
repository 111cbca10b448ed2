"""Prometheus metrics at ``GET /metrics`` (prometheus-client): requests by route template and
status, request latency, the engine's stage times, analyses waiting for the worker's engine,
the in-memory index's size, and the service's audited events (verifications by outcome,
liveness verdicts by reason, locks, quarantines).

Labels are route templates, statuses, actions, reason codes, engine stage names and embedding
space ids: never a subject, tenant, key, address or score.

Several workers: set ``PROMETHEUS_MULTIPROC_DIR`` (an empty folder; empty it before each
start) and every scrape aggregates all workers' files: counters and histograms are summed over
every worker that ever wrote (a restarted worker's counts are kept); the gauges
``facegate_requests_in_flight`` and ``facegate_analyses_waiting`` are summed over live workers
(a worker that stops cleanly removes its gauge file). ``facegate_index_templates`` is not in
those files: it is read at scrape time from the worker that answers, since every worker holds the
same index (kept in step through the template log; a worker may lag by the templates of the
last moments).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facegate.web.problems import route_template

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
    "facegate_requests_in_flight",
    "requests being answered (all live workers)",
    multiprocess_mode="livesum",
)
EVENTS = Counter(
    "facegate_events_total",
    "audited service events: verify match/no_match, liveness live/not_live, locks, ...",
    ["action", "outcome"],
)
LIVENESS_REASONS = Counter(
    "facegate_liveness_reasons_total", "reasons of liveness verdicts that were not live", ["reason"]
)
STAGES = Histogram(
    "facegate_engine_stage_seconds",
    "engine time per stage of each analysis that found a face: kind image (decode, detect,"
    " landmarks, align, quality, embed) or video (decode, detect, mesh, iris_pose_mouth,"
    " chips_colours, judge_and_identity, total: summed over the video's frames)",
    ["kind", "stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ANALYSES_WAITING = Gauge(
    "facegate_analyses_waiting",
    "requests waiting for their worker's engine (one analysis at a time per worker)",
    multiprocess_mode="livesum",
)
ANALYSIS = Histogram(
    "facegate_analysis_seconds",
    "an analysis's wait for the worker's engine (phase wait) and its run (phase run)",
    ["phase"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_LABEL = re.compile(r"^[a-z][a-z0-9_]{0,39}$")  # engine stage names: code, never data


def observe_event(action: str, outcome: str, reasons: list[str]) -> None:
    """The service's audit observer (``ServiceContext.observers``)."""
    EVENTS.labels(action, outcome).inc()
    if action.startswith("liveness") and outcome != "live":
        for code in reasons:
            LIVENESS_REASONS.labels(code).inc()


def observe_stages(kind: str, timings_ms: dict[str, float]) -> None:
    """The service's stage-time observer (``ServiceContext.timers``): the engine's own timings
    of one analysis (``FaceResult.timings_ms``, ``LivenessResult.timings_ms``)."""
    if not _LABEL.match(kind):
        return
    for stage, ms in timings_ms.items():
        if _LABEL.match(stage) and ms >= 0:
            STAGES.labels(kind, stage).observe(ms / 1000)


@contextmanager
def waiting_for_engine() -> Iterator[None]:
    """Around the wait for a worker's analysis slot: the queue depth and the wait's length."""
    started = time.perf_counter()
    ANALYSES_WAITING.inc()
    try:
        yield
    finally:
        ANALYSES_WAITING.dec()
        ANALYSIS.labels("wait").observe(time.perf_counter() - started)


@contextmanager
def running_analysis() -> Iterator[None]:
    """Around one analysis in the worker's engine thread."""
    started = time.perf_counter()
    try:
        yield
    finally:
        ANALYSIS.labels("run").observe(time.perf_counter() - started)


class IndexSizes(Collector):
    """``facegate_index_templates``: templates in the worker's in-memory 1:N index per
    embedding space, all tenants together, read when scraped. A database-side index (pgvector,
    ``FACEGATE_INDEX=pgvector-unsealed``) is the database's own: count it there."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def collect(self) -> Iterable[Metric]:
        index = getattr(getattr(getattr(self.service, "ctx", None), "gallery", None), "index", None)
        sizes = getattr(index, "sizes", None)
        if sizes is None:
            return []
        family = GaugeMetricFamily(
            "facegate_index_templates",
            "templates in this worker's in-memory 1:N index, per embedding space",
            labels=["space"],
        )
        for space, count in sorted(sizes().items()):
            family.add_metric([space], count)
        return [family]


class _Scrape(Collector):
    """What one scrape shows: the process's (or all workers') metrics, then the index."""

    def __init__(self, *sources: Collector) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        for source in self.sources:
            yield from source.collect()


def render(service: Any = None) -> bytes:
    """Prometheus text; all workers' files when ``PROMETHEUS_MULTIPROC_DIR`` is set."""
    base: Collector = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        workers = CollectorRegistry()
        multiprocess.MultiProcessCollector(workers)
        base = workers
    return generate_latest(_Scrape(base, IndexSizes(service)))


def forget_this_worker() -> None:
    """At a clean stop: drop this worker's live gauges from the shared folder."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())


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
            route = route_template(scope)
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(route).observe(time.perf_counter() - started)


# Headers a reverse proxy adds: a request that carries one came through the public entrance.
FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-host")


def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``; never loads the service (the index is shown once it is open).

    The text is for a scraper on the private address, never for the public behind a proxy: a
    request that carries a forwarding header is answered 404, so that no proxy rule (a deny
    that misses a path prefix, ``/facegate/facegate/metrics``, a new ``location``) can expose
    it. A client reaching the port directly can still read it: keep the port private."""
    if any(name in request.headers for name in FORWARDING_HEADERS):
        raise HTTPException(404)  # answered as any unknown path is (problem+json not_found)
    opened = getattr(request.app.state, "opened_service", None)
    return Response(render(opened() if opened else None), media_type=CONTENT_TYPE_LATEST)
