"""Errors as RFC 9457 problem details: a stable ``type`` per error code, never a stack trace,
never image or embedding content."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from facegate.errors import FacegateError

PROBLEM_BASE = "urn:facegate:problem:"

STATUS: dict[str, int] = {
    # 400: the request cannot be understood
    "bad_request": 400,
    "empty_file": 400,
    "not_an_image": 400,
    "unsupported_format": 400,
    "truncated_image": 400,
    "image_too_small": 400,
    "not_a_video": 400,
    "no_frames": 400,
    "invalid_actions": 400,
    "invalid_challenge": 400,
    "missing_probe": 400,
    # 401 / 403
    "unauthenticated": 401,
    "invalid_capture_token": 401,
    "forbidden": 403,
    "consent_required": 403,
    "liveness_required": 403,
    # 404: unknown, or another tenant's (indistinguishable on purpose)
    "not_found": 404,
    # 409 / 410
    "duplicate_face": 409,
    "subject_exists": 409,
    "tenant_exists": 409,
    "challenge_used": 409,
    "not_enrolled": 409,
    "liveness_session_invalid": 409,
    "challenge_expired": 410,
    # 413: over a limit
    "body_too_large": 413,
    "image_too_large": 413,
    "too_many_pixels": 413,
    "video_too_large": 413,
    "video_resolution_too_high": 413,
    "video_too_long": 413,
    # 422: understood, but the face or the evidence is not good enough
    "no_face": 422,
    "multiple_faces": 422,
    "face_too_small": 422,
    "blurred": 422,
    "too_dark": 422,
    "overexposed": 422,
    "head_turned": 422,
    "head_tilted": 422,
    "document_mismatch": 422,
    "not_live": 422,
    "consent_text_outdated": 422,
    "embedding_space_mismatch": 422,
    "bad_settings": 422,
    # 423 / 429
    "subject_locked": 423,
    "rate_limited": 429,
}


def problem(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
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
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


async def facegate_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FacegateError)
    status = STATUS.get(exc.code, 400 if exc.code.startswith("bad") else 500)
    if status >= 500:
        return problem(500, "internal_error", "the server could not complete the request")
    return problem(status, exc.code, str(exc), **_safe(exc.details))


def _safe(details: dict[str, Any]) -> dict[str, Any]:
    """Only plain, small values leave the server (measured numbers, codes, ids)."""
    out: dict[str, Any] = {}
    for k, v in details.items():
        if isinstance(v, (str, int, float, bool)) or v is None or isinstance(v, (list, dict)):
            out[k] = v
    return out
