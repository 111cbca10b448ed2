"""The capture page and its API: a short-lived capture link stands in for an API key in the
person's browser, scoped to one subject and one flow (enrol or verify). The page may be framed
only by the origins its tenant lists in ``embed_origins`` (docs/embedding.md); ``embed.js`` is
the relying party's side of that frame."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Annotated, Any

from fastapi import File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from facegate.web.deps import (
    AnalysesDep,
    CaptureDep,
    CapturerDep,
    CaptureTokenDep,
    ServiceDep,
    read_upload,
)
from facegate.web.problems import problem_responses
from facegate.web.routers import Router
from facegate.web.schemas import (
    CaptureDeclined,
    CaptureInfo,
    CaptureLink,
    CaptureLinkCreate,
    CaptureLinkRevoked,
    CaptureLinkStatus,
    CaptureResult,
    Challenge,
    Consent,
)

router = Router(tags=["capture"], responses=problem_responses(401))

STATIC = Path(__file__).resolve().parents[1] / "static"
PAGE = (STATIC / "index.html").read_text(encoding="utf-8")
EMBED_JS = (STATIC / "embed.js").read_bytes()  # fixed bytes: a relying party may pin its hash
EMBED_MARK = '<meta name="facegate-embed" content="">'
assert EMBED_MARK in PAGE


def page_headers(origins: list[str]) -> dict[str, str]:
    """The page's headers. ``frame-ancestors`` names exactly the tenant's embedding origins,
    or 'none' (with ``X-Frame-Options: DENY`` for browsers without CSP 2), so that no other
    site can frame the page and trick a person into a capture under its own text. The camera
    is this origin's only, and a frame's only where its embedder delegates it (allow="camera")."""
    ancestors = " ".join(origins) if origins else "'none'"
    headers = {
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'self'; media-src 'self' blob:; "
        "img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
        f"frame-ancestors {ancestors}; base-uri 'none'; form-action 'self'",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
    }
    if not origins:
        headers["X-Frame-Options"] = "DENY"
    return headers


@router.get("/", include_in_schema=False)
def capture_page(request: Request, svc: ServiceDep) -> HTMLResponse:
    """The capture page for ``?t=<capture token>``; strict CSP, never cached, no referrer (the
    link carries a token). ``&origin=`` is the embedding page's origin (embed.js sends it): when
    the link's tenant allows it, the page posts its outcome there, and nowhere else."""
    token = request.query_params.get("t", "")
    origins, link_id = svc.capture.embedding(token) if token else ([], None)
    origin = request.query_params.get("origin", "")
    page = PAGE
    if link_id is not None and origin in origins:
        page = PAGE.replace(
            EMBED_MARK,
            f'<meta name="facegate-embed" content="" data-origin="{html.escape(origin)}"'
            f' data-link="{html.escape(link_id)}">',
        )
    return HTMLResponse(page, headers=page_headers(origins))


@router.get("/capture/embed.js", include_in_schema=False)
def embed_script() -> Response:
    """The relying party's script (docs/embedding.md). Readable from any origin (CORS), so that
    a page can load it with ``integrity=`` and ``crossorigin="anonymous"``."""
    return Response(
        EMBED_JS,
        media_type="text/javascript; charset=utf-8",
        headers={
            "Access-Control-Allow-Origin": "*",
            "Cross-Origin-Resource-Policy": "cross-origin",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "public, max-age=300",
        },
    )


@router.post(
    "/v1/capture-links",
    status_code=201,
    response_model=CaptureLink,
    responses=problem_responses(400, 403, 404, 429),
)
def capture_link(
    request: Request, caller: CapturerDep, svc: ServiceDep, body: CaptureLinkCreate
) -> dict[str, Any]:
    """A short-lived link to the capture page for one subject and one flow. ``actions`` and
    ``flash: false`` fix its check: evaluation tenants only (``allow_chosen_actions``). Its
    ``url`` is relative to this host, under FACEGATE_ROOT_PATH behind a proxy."""
    actions = None if body.actions is None else tuple(body.actions)
    link = svc.new_capture_link(
        caller, body.subject_id, body.flow, body.ttl_s, actions=actions, flash=body.flash
    )
    return {**link, "url": request.app.state.settings.root_path + link["url"]}


@router.get(
    "/v1/capture-links/{link_id}",
    response_model=CaptureLinkStatus,
    responses=problem_responses(403, 404, 429),
)
def capture_link_status(caller: CapturerDep, svc: ServiceDep, link_id: str) -> dict[str, Any]:
    """The link's state for your back end: pending, passed, failed, declined, expired or revoked,
    with the result of its last capture (live, match, reason codes; no biometric data)."""
    return svc.capture_link_status(caller, link_id)


@router.delete(
    "/v1/capture-links/{link_id}",
    response_model=CaptureLinkRevoked,
    responses=problem_responses(403, 404, 429),
)
def capture_link_revoke(caller: CapturerDep, svc: ServiceDep, link_id: str) -> dict[str, Any]:
    """Revoke a capture link: its page stops working at once."""
    return svc.revoke_capture_link(caller, link_id)


@router.get("/v1/capture/info", response_model=CaptureInfo)
def capture_info(ctx: CaptureDep, svc: ServiceDep) -> dict[str, Any]:
    """What the page shows: the flow, the consent text (unless given) and the alternative."""
    caller, subject_id, flow = ctx
    return svc.capture_info(caller, subject_id, flow)


@router.post(
    "/v1/capture/consent",
    status_code=201,
    response_model=Consent,
    responses=problem_responses(404),
)
def capture_consent(ctx: CaptureDep, svc: ServiceDep) -> dict[str, Any]:
    """The person agreed to the current consent text on the page."""
    caller, subject_id, _ = ctx
    return svc.capture_consent(caller, subject_id)


@router.post("/v1/capture/decline", response_model=CaptureDeclined)
def capture_decline(ctx: CaptureDep, svc: ServiceDep) -> dict[str, Any]:
    """The person declined: recorded, and the non-face alternative is shown."""
    caller, subject_id, _ = ctx
    return svc.capture_decline(caller, subject_id)


@router.post(
    "/v1/capture/challenge",
    status_code=201,
    response_model=Challenge,
    responses=problem_responses(403, 409, 423),
)
def capture_challenge(ctx: CaptureDep, svc: ServiceDep) -> dict[str, Any]:
    """The server's challenge with a colour flash (consent required first); counted against
    the subject's attempts until a live answer arrives."""
    caller, subject_id, flow = ctx
    return svc.capture_challenge(caller, subject_id, flow)


@router.post(
    "/v1/capture/submit",
    response_model=CaptureResult,
    responses=problem_responses(400, 403, 404, 409, 410, 413, 422, 423, 503),
)
async def capture_submit(
    capture_token: CaptureTokenDep,
    svc: ServiceDep,
    analyses: AnalysesDep,
    token: Annotated[str, Form(max_length=4096, description="the challenge's token")],
    video: Annotated[UploadFile, File(description="the recording (WebM, MP4)")],
) -> dict[str, Any]:
    """Liveness, then enrolment or verification from the same recording, in one step."""
    data = await read_upload(video)  # then the check, in the worker's bounded executor
    return await analyses.run(lambda: svc.capture_submit(capture_token, token, data))
