"""Errors as RFC 9457 problem details, built from the error class: each class in
``facegate.errors`` declares its HTTP status, so there is no table of codes to keep in step.

A problem carries a stable ``type`` (``urn:facegate:problem:<code>``), never a stack trace, never
image or embedding content. Server-side faults (status >= 500) answer a generic
``internal_error`` and are logged by class name and code only; ``UnavailableError`` and
``ModelError`` keep their code (503), because an operator or a load balancer can act on them.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Scope

from facegate.errors import FacegateError, ModelError, UnavailableError

log = logging.getLogger(__name__)

PROBLEM_BASE = "urn:facegate:problem:"
PROBLEM_MEDIA_TYPE = "application/problem+json"

# What each status means for this API, for the OpenAPI description of problem responses.
STATUS_MEANING: dict[int, str] = {
    400: "malformed request or unusable bytes (bad_request, missing_probe, not_an_image, ...)",
    401: "no valid API key or capture link (unauthenticated, invalid_capture_token)",
    403: "the key lacks the role, or consent or liveness is required",
    404: "unknown, or another tenant's (indistinguishable on purpose)",
    409: "exists already, already used, not enrolled, or a duplicate face",
    410: "the challenge has expired",
    413: "over a limit: body, image bytes or pixels, video size, resolution or length",
    422: "no usable face, or not enough evidence (not live, document mismatch, outdated consent)",
    423: "too many failed attempts: the subject is locked (Retry-After)",
    429: "too many requests for this key, capture link or address (Retry-After)",
    503: "a part of the server is off, not ready or busy (liveness disabled, database down)",
}


def route_template(scope: Scope) -> str:
    """The matched route's template (``/v1/subjects/{subject_id}``), never the path: paths name
    subjects. ``unmatched`` before routing, or where no route matched."""
    return getattr(scope.get("route"), "path", None) or "unmatched"


def problem(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    """A problem+json response; ``retry_after_s`` also becomes the ``Retry-After`` header."""
    body = {
        "type": PROBLEM_BASE + code,
        "title": code.replace("_", " "),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    headers = {}
    if "retry_after_s" in extra:
        headers["Retry-After"] = str(int(extra["retry_after_s"]))
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


async def facegate_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Status from the class; details only when the fault is the client's."""
    assert isinstance(exc, FacegateError)
    if exc.status < 500:
        return problem(exc.status, exc.code, str(exc), **_safe(exc.details))
    log.error("%s (%s) on %s", type(exc).__name__, exc.code, route_template(request.scope))
    if isinstance(exc, (UnavailableError, ModelError)):
        return problem(503, exc.code, str(exc))  # messages are written to be safe; no details
    return problem(500, "internal_error", "the server could not complete the request")


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """400 ``bad_request`` naming the offending fields (never their values)."""
    assert isinstance(exc, RequestValidationError)
    fields = [".".join(str(p) for p in e["loc"]) for e in exc.errors()]
    return problem(400, "bad_request", "the request is malformed", fields=fields)


# Starlette's own refusals (no route, wrong method, a body that does not parse), by status.
HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    415: "unsupported_media_type",
}


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's and FastAPI's ``HTTPException`` (no route, method not allowed, unparsable
    body) as problem+json like every other refusal. A 405's ``Allow`` lists every method the
    path has: Starlette names only the first route that matched the path, and FastAPI makes one
    route per method."""
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    response = problem(exc.status_code, code, detail)
    response.headers.update(headers)
    return response


def _allowed_methods(request: Request) -> list[str]:
    methods: list[str] = []
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match == Match.NONE:
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            if method not in methods:
                methods.append(method)
    return methods


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Anything not raised on purpose: 500, logged by class name only (no message, no data)."""
    log.error("unexpected %s on %s", type(exc).__name__, route_template(request.scope))
    return problem(500, "internal_error", "the server could not complete the request")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the problem statuses a route can answer, as problem+json. The
    ``Problem`` schema is added to the components by ``facegate.web.openapi``."""
    return {
        status: {
            "description": STATUS_MEANING[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def _safe(details: dict[str, Any]) -> dict[str, Any]:
    """Only plain, small values leave the server (measured numbers, codes, ids)."""
    out: dict[str, Any] = {}
    for k, v in details.items():
        if isinstance(v, (str, int, float, bool)) or v is None or isinstance(v, (list, dict)):
            out[k] = v
    return out
