"""Structured logs: one JSON object a line, one line per request (request id, method, route
template, status, duration, tenant id), and every error logged by the service carrying the same
request id.

What never reaches a log: images, embeddings, keys, tokens, subject ids (routes are logged as
templates, ``/v1/subjects/{subject_id}/verify``, never as the path a client sent) and scores.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facegate.web.middleware import CALLER_STATE
from facegate.web.problems import route_template

log = logging.getLogger("facegate.requests")
REQUEST_ID = contextvars.ContextVar("facegate_request_id", default="")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
FIELDS = ("request_id", "method", "route", "status", "duration_ms", "tenant_id")


class JsonFormatter(logging.Formatter):
    """A log record as one JSON line: time, level, logger, message, and the request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            out["request_id"] = request_id
        for name in FIELDS[1:]:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = record.exc_info[0].__name__  # the class only: no message, no data
        return json.dumps(out, separators=(",", ":"))


# For ``uvicorn.run(log_config=...)``: uvicorn applies it in every worker process.
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "facegate.web.logs.JsonFormatter"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {
        "facegate": {"level": "INFO"},
        "uvicorn": {"handlers": [], "level": "WARNING", "propagate": True},
        "uvicorn.error": {"handlers": [], "level": "WARNING", "propagate": True},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
    },
}


class RequestLog:
    """ASGI middleware: give each request an id (a caller's sane ``X-Request-ID`` is kept),
    send it back in ``X-Request-ID``, and log one line when the answer is done."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            found = scope.get("state", {}).get(CALLER_STATE)
            caller = found[1] if found else None
            if isinstance(caller, tuple):  # a capture link: (caller, subject, flow)
                caller = caller[0]
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "route": route_template(scope),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "tenant_id": getattr(caller, "tenant_id", None),
                },
            )
            REQUEST_ID.reset(token)
