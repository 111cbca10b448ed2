"""Optional OpenTelemetry tracing: off unless ``FACEGATE_OTEL=1`` (and ``pip install
'facegate[otel]'``); then one server span per HTTP request or WebSocket, named by method and
route template, and one ``facegate.analysis`` span around each analysis in the worker's engine,
carrying the engine's stage times.

Why our own small middleware rather than opentelemetry-instrumentation-fastapi: that one records
the request's path, full URL, query, peer address and user agent as span attributes, and paths
name subjects (``/v1/subjects/alice/verify``). Here a span carries only what the metrics already
show: the method, the route template, the status, the request id, the error's class, and stage
names with milliseconds. Never a subject, tenant, key, token, path, address, score or image;
exceptions are not recorded (their messages are not ours to vet), only their class.

The exporter is configured with the standard variables: ``OTEL_TRACES_EXPORTER`` (``otlp``, the
default, over HTTP with the ``OTEL_EXPORTER_OTLP_*`` variables; ``console``; ``none``),
``OTEL_SERVICE_NAME`` (default ``facegate``), ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER`` and its argument. A caller's ``traceparent`` header is continued.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facegate.errors import ConfigError
from facegate.web.logs import REQUEST_ID
from facegate.web.problems import route_template

_tracer: Any = None  # the SDK's tracer once ``configure`` ran; None: tracing off
# ``FastAPI(telemetry=...)`` (FastAPI 0.16x; older versions keep it as an unused extra)
FASTAPI_TELEMETRY_OFF: Any = {  # a TelemetryConfig where FastAPI has one
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


def enabled() -> bool:
    return _tracer is not None


def _exporter_from_env() -> Any:
    name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip().lower()
    if name in ("", "none"):
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError(
                "OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http: "
                "pip install 'facegate[otel]'",
                code="bad_setting",
            ) from None
        return OTLPSpanExporter()
    raise ConfigError(
        "OTEL_TRACES_EXPORTER must be otlp, console or none for facegate", code="bad_setting"
    )


def configure(exporter: Any = None) -> None:
    """Start tracing in this process (once; later calls keep the first set-up). ``exporter``
    (tests: an in-memory one, exported as each span ends) replaces the one the environment
    names (batched in a background thread)."""
    global _tracer
    if _tracer is not None:
        return
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        raise ConfigError(
            "FACEGATE_OTEL=1 needs the OpenTelemetry SDK: pip install 'facegate[otel]'",
            code="bad_setting",
        ) from None
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "facegate"}
    provider = TracerProvider(resource=Resource.create(attributes))  # reads OTEL_* itself
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        found = _exporter_from_env()
        if found is not None:
            provider.add_span_processor(BatchSpanProcessor(found))
    # not made the global provider: libraries that trace on their own (FastAPI's native
    # telemetry records paths) stay silent; spans are only what this module makes
    _tracer = provider.get_tracer("facegate")


def reset() -> None:
    """Stop tracing in this process (tests)."""
    global _tracer
    _tracer = None


class Tracing:
    """ASGI middleware: a server span per request, named ``METHOD /route/{template}``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = _tracer
        if tracer is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind, Status, StatusCode

        method = str(scope.get("method", "GET")) if scope["type"] == "http" else "WEBSOCKET"
        parent = extract(dict(Headers(scope=scope)))  # W3C traceparent, if the caller sent one
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "websocket.accept":
                status = 101
            await send(message)

        with tracer.start_as_current_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method},
            record_exception=False,  # exception messages are not vetted: only the class
            set_status_on_exception=False,
        ) as span:
            try:
                await self.app(scope, receive, sending)
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR))
                raise
            finally:
                route = route_template(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                if status:
                    span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                request_id = REQUEST_ID.get()
                if request_id:
                    span.set_attribute("facegate.request_id", request_id)


@contextmanager
def analysis_span() -> Iterator[None]:
    """Around one analysis in the worker's engine thread (a child of the request's span)."""
    tracer = _tracer
    if tracer is None:
        yield
        return
    with tracer.start_as_current_span(
        "facegate.analysis", record_exception=False, set_status_on_exception=True
    ):
        yield


def stage_times(kind: str, timings_ms: dict[str, float]) -> None:
    """A ``ServiceContext.timers`` observer: the engine's stage times on the analysis span."""
    if _tracer is None:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute("facegate.analysis.kind", kind)
    for stage, ms in timings_ms.items():
        if stage.replace("_", "").isalnum() and stage.isascii():
            span.set_attribute(f"facegate.stage.{stage}_ms", round(float(ms), 2))
