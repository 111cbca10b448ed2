"""The REST API (FastAPI). Thin: authenticate, parse, call FaceService, shape the answer.

OpenAPI at /openapi.json and /docs. Uploads are read into memory only: Starlette's multipart
parser would spool files over 1 MB to a temporary file, so its spool size is raised to the body
limit, which the middleware below enforces first.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette import formparsers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facegate.errors import FacegateError
from facegate.liveness.actions import ACTIONS
from facegate.service.core import ROLES, Caller, FaceService, Probe, ServiceError, open_service
from facegate.service.problems import facegate_error_handler, problem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    max_body_bytes: int = 32 * 1024 * 1024  # a 30 MB video plus form overhead
    rate_per_minute: int = 120
    liveness: bool = True
    num_threads: int = 1  # from_env: FACEGATE_THREADS, default default_threads()

    @classmethod
    def from_env(cls) -> Settings:
        from facegate.config import data_dir

        return cls(
            data_dir=data_dir(),
            max_body_bytes=int(os.environ.get("FACEGATE_MAX_BODY_BYTES", 32 * 1024 * 1024)),
            rate_per_minute=int(os.environ.get("FACEGATE_RATE_PER_MINUTE", 120)),
            num_threads=int(os.environ.get("FACEGATE_THREADS", default_threads())),
        )


def default_threads() -> int:
    """Interpreter threads per worker: two where there are two cores. On this 2-core machine,
    two workers with two threads each verify a photo in ~30 ms instead of ~45 ms when the
    service is not saturated, and lose ~15% throughput when it is (bench/bench_all.py)."""
    return min(2, os.cpu_count() or 1)


class BodyLimit:
    """Refuse bodies over the limit, by Content-Length and by counting what actually arrives."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await problem(
                413, "body_too_large", "the request body is over the limit", limit=self.limit
            )(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise ServiceError("the request body is over the limit", code="body_too_large")
            return message

        await self.app(scope, counted, send)


class RateLimiter:
    """A token bucket per API key (per worker process)."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(1.0, per_minute / 6.0)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when allowed, else seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


# -- request bodies ------------------------------------------------------------------------------


class SubjectCreate(BaseModel):
    subject_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    external_ref: str | None = Field(default=None, max_length=200)


class ConsentCreate(BaseModel):
    text_version: str = Field(max_length=40)
    method: str = Field(
        max_length=80, description="how consent was given, e.g. 'checkbox on capture page'"
    )
    purpose: str = Field(default="face_verification", pattern=r"^face_verification$")


class KeyCreate(BaseModel):
    roles: list[str]
    label: str = Field(default="", max_length=80)


class CaptureLinkCreate(BaseModel):
    subject_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    flow: str = Field(pattern=r"^(enroll|verify)$")
    ttl_s: float = Field(default=600, ge=30, le=3600)


class ChallengeRequest(BaseModel):
    actions: list[str] | None = Field(default=None, max_length=6)
    flash: bool = False


class TenantUpdate(BaseModel):
    operating_point: str | None = Field(default=None, pattern=r"^fmr_1e-[234]$")
    duplicate_operating_point: str | None = Field(default=None, pattern=r"^fmr_1e-[234]$")
    duplicate_policy: str | None = Field(default=None, pattern=r"^(flag|reject)$")
    retention_days: int | None = Field(default=None, ge=1, le=3650)
    require_liveness: bool | None = None
    consent_text: str | None = Field(default=None, max_length=5000)
    consent_text_version: str | None = Field(default=None, max_length=40)
    non_face_alternative: str | None = Field(default=None, max_length=2000)


def service_of(request: Request) -> FaceService:
    return request.app.state.get_service()


def caller_with(*roles: str) -> Callable[[Request], Caller]:
    """Dependency: the authenticated, rate-limited caller, holding one of ``roles``."""

    def dependency(request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        token = (
            header[7:]
            if header.lower().startswith("bearer ")
            else request.headers.get("x-api-key", "")
        )
        caller = service_of(request).authenticate(token) if token else None
        if caller is None:
            raise ServiceError("a valid API key is required", code="unauthenticated")
        wait = request.app.state.limiter.take(caller.key_id)
        if wait:
            raise ServiceError(
                "too many requests for this key",
                code="rate_limited",
                retry_after_s=max(1, int(wait + 0.999)),
            )
        if not caller.roles & set(roles):
            raise ServiceError(
                f"this key needs one of the roles: {', '.join(roles)}", code="forbidden"
            )
        return caller

    return dependency


def capture_context(request: Request) -> tuple[Caller, str, str]:
    """Dependency for the capture page: (caller, subject id, flow) from its capture token."""
    return service_of(request).open_capture(request.headers.get("x-capture-token", ""))


CaptureDep = Annotated[tuple[Caller, str, str], Depends(capture_context)]
AdminDep = Annotated[Caller, Depends(caller_with("admin"))]
EnrollerDep = Annotated[Caller, Depends(caller_with("enroll", "admin"))]
VerifierDep = Annotated[Caller, Depends(caller_with("verify", "admin"))]
SearcherDep = Annotated[Caller, Depends(caller_with("search"))]
DuplicatesDep = Annotated[Caller, Depends(caller_with("search", "admin"))]
CapturerDep = Annotated[Caller, Depends(caller_with("enroll", "verify", "admin"))]
AnyoneDep = Annotated[Caller, Depends(caller_with(*ROLES))]


PUBLIC_SETTINGS = (
    "operating_point",
    "duplicate_operating_point",
    "duplicate_policy",
    "retention_days",
    "require_liveness",
    "consent_text",
    "consent_text_version",
    "non_face_alternative",
)


def create_app(settings: Settings | None = None, service: FaceService | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    formparsers.MultiPartParser.spool_max_size = settings.max_body_bytes + 1  # never to disk
    state: dict[str, Any] = {"service": service}

    def get_service() -> FaceService:
        svc = state["service"]
        if svc is None:
            svc = state["service"] = open_service(
                settings.data_dir, liveness=settings.liveness, num_threads=settings.num_threads
            )
        return svc

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        get_service()  # load the models and open the store before the first request
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="facegate",
        version="0.1.0",
        description="Self-hosted face verification with liveness, duplicate search and protected "
        "templates. Authenticate with `Authorization: Bearer fg_<id>_<secret>`.",
    )
    app.state.get_service = get_service
    app.state.limiter = RateLimiter(settings.rate_per_minute)
    app.add_exception_handler(FacegateError, facegate_error_handler)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [".".join(str(p) for p in e["loc"]) for e in exc.errors()]
        return problem(400, "bad_request", "the request is malformed", fields=fields)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s on %s", type(exc).__name__, request.url.path)
        return problem(500, "internal_error", "the server could not complete the request")

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    async def read_upload(upload: UploadFile | None) -> bytes | None:
        if upload is None:
            return None
        data = await upload.read()
        await upload.close()
        return data

    async def probe(caller: Caller, image: UploadFile | None, session: str | None) -> Probe:
        svc = get_service()
        if session:
            return svc.probe_from_session(caller, session)
        data = await read_upload(image)
        if data is None:
            raise ServiceError("send an image file or a liveness_session id", code="missing_probe")
        return svc.probe_from_image(data)

    # -- health ----------------------------------------------------------------------------

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> dict[str, Any]:
        svc = get_service()
        svc.store.last_log_seq()
        return {
            "status": "ready",
            "embedding_space": svc.engine.space_id,
            "liveness": svc.checker is not None,
        }

    # -- tenant and keys ---------------------------------------------------------------------

    @app.get("/v1/tenant", tags=["tenant"])
    def tenant_info(caller: AnyoneDep) -> dict[str, Any]:
        t = get_service().tenant(caller.tenant_id)
        return {"tenant_id": t.id, "name": t.name, **{k: t.settings[k] for k in PUBLIC_SETTINGS}}

    @app.patch("/v1/tenant", tags=["tenant"])
    def tenant_update(caller: AdminDep, body: TenantUpdate) -> dict[str, Any]:
        svc = get_service()
        t = svc.tenant(caller.tenant_id)
        changes = body.model_dump(exclude_none=True)
        svc.store.update_tenant_settings(t.id, {**t.settings, **changes})
        svc.audit(caller, "tenant.update", "ok", details={"changed": sorted(changes)})
        return tenant_info(caller)

    @app.post("/v1/keys", tags=["tenant"], status_code=201)
    def key_create(caller: AdminDep, body: KeyCreate) -> dict[str, Any]:
        roles = frozenset(body.roles)
        if not roles or not roles <= ROLES:
            raise ServiceError(f"roles must be among {sorted(ROLES)}", code="bad_request")
        svc = get_service()
        key = svc.store.add_api_key(caller.tenant_id, roles, body.label, time.time())
        svc.audit(
            caller,
            "key.create",
            "ok",
            details={"key_id": key.split("_")[1], "roles": sorted(roles)},
        )
        return {"key": key, "key_id": key.split("_")[1], "roles": sorted(roles)}

    @app.delete("/v1/keys/{key_id}", tags=["tenant"])
    def key_revoke(caller: AdminDep, key_id: str) -> dict[str, Any]:
        svc = get_service()
        if not svc.store.revoke_api_key(caller.tenant_id, key_id, time.time()):
            raise ServiceError("no such key", code="not_found")
        svc.audit(caller, "key.revoke", "ok", details={"key_id": key_id})
        return {"key_id": key_id, "revoked": True}

    # -- subjects and consent ---------------------------------------------------------------

    @app.post("/v1/subjects", tags=["subjects"], status_code=201)
    def subject_create(caller: EnrollerDep, body: SubjectCreate) -> dict[str, Any]:
        return get_service().create_subject(caller, body.subject_id, body.external_ref)

    @app.get("/v1/subjects/{subject_id}", tags=["subjects"])
    def subject_get(caller: CapturerDep, subject_id: str) -> dict[str, Any]:
        return get_service().subject_view(caller, subject_id)

    @app.delete("/v1/subjects/{subject_id}", tags=["subjects"])
    def subject_erase(caller: EnrollerDep, subject_id: str) -> dict[str, Any]:
        return get_service().erase_subject(caller, subject_id)

    @app.get("/v1/subjects/{subject_id}/export", tags=["subjects"])
    def subject_export(caller: AdminDep, subject_id: str) -> dict[str, Any]:
        return get_service().export_subject(caller, subject_id)

    @app.post("/v1/subjects/{subject_id}/consents", tags=["consent"], status_code=201)
    def consent_grant(caller: CapturerDep, subject_id: str, body: ConsentCreate) -> dict[str, Any]:
        return get_service().grant_consent(
            caller, subject_id, body.purpose, body.text_version, body.method
        )

    @app.delete("/v1/subjects/{subject_id}/consents", tags=["consent"])
    def consent_withdraw(caller: CapturerDep, subject_id: str) -> dict[str, Any]:
        return get_service().withdraw_consent(caller, subject_id)

    # -- enrolment, verification, search ------------------------------------------------------

    @app.post("/v1/subjects/{subject_id}/enroll", tags=["faces"], status_code=201)
    async def enroll(
        caller: EnrollerDep,
        subject_id: str,
        image: UploadFile | None = File(default=None),
        liveness_session: str | None = Form(default=None),
    ) -> dict[str, Any]:
        p = await probe(caller, image, liveness_session)
        return get_service().enroll(
            caller, subject_id, p, "liveness" if liveness_session else "photo"
        )

    @app.post("/v1/subjects/{subject_id}/enroll/id-document", tags=["faces"], status_code=201)
    async def enroll_document(
        caller: EnrollerDep,
        subject_id: str,
        document: UploadFile = File(...),
        image: UploadFile | None = File(default=None),
        liveness_session: str | None = Form(default=None),
    ) -> dict[str, Any]:
        doc = await read_upload(document)
        p = await probe(caller, image, liveness_session)
        assert doc is not None
        return get_service().enroll_with_document(caller, subject_id, doc, p)

    @app.post("/v1/subjects/{subject_id}/verify", tags=["faces"])
    async def verify(
        caller: VerifierDep,
        subject_id: str,
        image: UploadFile | None = File(default=None),
        liveness_session: str | None = Form(default=None),
    ) -> dict[str, Any]:
        p = await probe(caller, image, liveness_session)
        return get_service().verify(caller, subject_id, p)

    @app.post("/v1/search", tags=["faces"])
    async def search(
        caller: SearcherDep,
        subject_id: str = Form(...),
        image: UploadFile | None = File(default=None),
        liveness_session: str | None = Form(default=None),
        k: int = Form(default=10, ge=1, le=100),
    ) -> dict[str, Any]:
        p = await probe(caller, image, liveness_session)
        return get_service().search(caller, subject_id, p, k)

    @app.get("/v1/duplicates", tags=["faces"])
    def duplicates(
        caller: DuplicatesDep,
    ) -> dict[str, Any]:
        return get_service().duplicates(caller)

    # -- liveness ----------------------------------------------------------------------------

    @app.post("/v1/liveness/challenges", tags=["liveness"], status_code=201)
    def challenge(caller: CapturerDep, body: ChallengeRequest) -> dict[str, Any]:
        actions = tuple(body.actions) if body.actions else None
        if actions and any(a not in ACTIONS for a in actions):
            raise ServiceError(f"actions must be among {list(ACTIONS)}", code="invalid_actions")
        return get_service().new_challenge(caller, actions, body.flash)

    @app.post("/v1/liveness/sessions", tags=["liveness"], status_code=201)
    async def liveness_session(
        caller: CapturerDep,
        token: str = Form(..., max_length=4096),
        video: UploadFile = File(...),
        subject_id: str | None = Form(default=None),
    ) -> dict[str, Any]:
        data = await read_upload(video)
        assert data is not None
        return get_service().submit_liveness(caller, token, data, subject_id)

    # -- capture page ------------------------------------------------------------------------

    @app.post("/v1/capture-links", tags=["capture"], status_code=201)
    def capture_link(caller: CapturerDep, body: CaptureLinkCreate) -> dict[str, Any]:
        """A short-lived link to the capture page for one subject and one flow."""
        return get_service().new_capture_link(caller, body.subject_id, body.flow, body.ttl_s)

    @app.get("/v1/capture/info", tags=["capture"])
    def capture_info(ctx: CaptureDep) -> dict[str, Any]:
        caller, subject_id, flow = ctx
        svc = get_service()
        t = svc.tenant(caller.tenant_id)
        consent = svc.store.active_consent(caller.tenant_id, subject_id, "face_verification")
        return {
            "flow": flow,
            "consent_given": consent is not None,
            **{
                k: t.settings[k]
                for k in ("consent_text", "consent_text_version", "non_face_alternative")
            },
        }

    @app.post("/v1/capture/consent", tags=["capture"], status_code=201)
    def capture_consent(ctx: CaptureDep) -> dict[str, Any]:
        caller, subject_id, _ = ctx
        svc = get_service()
        version = svc.tenant(caller.tenant_id).settings["consent_text_version"]
        return svc.grant_consent(
            caller,
            subject_id,
            "face_verification",
            version,
            "capture page: 'I agree' after reading the consent text",
        )

    @app.post("/v1/capture/decline", tags=["capture"])
    def capture_decline(ctx: CaptureDep) -> dict[str, Any]:
        caller, subject_id, _ = ctx
        svc = get_service()
        svc.audit(caller, "consent.decline", "ok", subject_id=subject_id)
        return {
            "non_face_alternative": svc.tenant(caller.tenant_id).settings["non_face_alternative"]
        }

    @app.post("/v1/capture/challenge", tags=["capture"], status_code=201)
    def capture_challenge(ctx: CaptureDep) -> dict[str, Any]:
        caller, subject_id, _ = ctx
        svc = get_service()
        svc.require_consent(caller, subject_id)
        # the page shows the colour flash: a recording made before this challenge cannot follow it
        return svc.new_challenge(caller, None, flash=True)

    @app.post("/v1/capture/submit", tags=["capture"])
    async def capture_submit(
        request: Request, token: str = Form(..., max_length=4096), video: UploadFile = File(...)
    ) -> dict[str, Any]:
        data = await read_upload(video)
        assert data is not None
        return get_service().capture_submit(request.headers.get("x-capture-token", ""), token, data)

    static = Path(__file__).resolve().parents[1] / "web" / "static"
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    def capture_page() -> FileResponse:
        return FileResponse(
            static / "index.html",
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": "default-src 'self'; media-src 'self' blob:; "
                "img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'",
                "Referrer-Policy": "no-referrer",
            },
        )

    return app
