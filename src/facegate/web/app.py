"""The FastAPI application: lifespan, limits, error handlers, the routers and the capture page.

OpenAPI at /openapi.json (Swagger UI at /docs only with FACEGATE_API_DOCS=1). Uploads are read
into memory only: Starlette's multipart parser would spool files over 1 MB to a temporary file,
so its spool size is raised to the body limit, which ``BodyLimit`` enforces first. Requests
pass, from the outside in: ``Metrics``; ``RateLimit`` (per address); ``AuthGate`` (the key or
capture token from the headers, before any body is read, and the worker's cap on uploads in
flight); ``Idempotency``; ``BodyLimit``. The routes run the engine through the worker's bounded
``Analyses`` executor; they live in ``facegate.web.routers``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette import formparsers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from facegate import __version__
from facegate.errors import FacegateError, UnavailableError
from facegate.service import FaceService
from facegate.service.compose import open_service
from facegate.settings import Settings
from facegate.storage.ratelimit import PostgresRateStore, RateStore, SQLiteRateStore
from facegate.web import openapi, tracing
from facegate.web.deps import Analyses
from facegate.web.idempotency import Idempotency
from facegate.web.logs import RequestLog
from facegate.web.metrics import (
    Metrics,
    forget_this_worker,
    metrics_endpoint,
    observe_event,
    observe_stages,
)
from facegate.web.middleware import RATE_SECRET_LABEL, AuthGate, BodyLimit, RateLimit, RateLimits
from facegate.web.problems import (
    facegate_error_handler,
    http_error_handler,
    problem,
    unexpected_error_handler,
    validation_error_handler,
)
from facegate.web.routers import capture, faces, health, liveness, stream, subjects, tenant
from facegate.web.routers import webhooks as webhook_routes
from facegate.web.webhook_loop import webhook_deliveries

STATIC = Path(__file__).resolve().parent / "static"  # the capture page: routers/capture.py
DESCRIPTION = (
    "Self-hosted face verification with liveness, duplicate search and protected templates. "
    "Authenticate with `Authorization: Bearer fg_<id>_<secret>` (or `X-API-Key`). Errors are "
    "RFC 9457 `application/problem+json` with a stable `code`."
)


def open_rate_store(settings: Settings) -> RateStore:
    """Where rate-limit buckets live: the shared PostgreSQL when there is one (limits hold
    across machines), else ``ratelimit.sqlite3`` in the data folder (across one machine's
    workers). Both connect on first use."""
    if settings.uses_postgres:
        assert settings.database_url is not None
        return PostgresRateStore(settings.database_url)
    return SQLiteRateStore(settings.data_dir / "ratelimit.sqlite3")


def create_app(
    settings: Settings | None = None,
    service: FaceService | None = None,
    rate_store: RateStore | None = None,
) -> FastAPI:
    """The app for ``settings`` (default: read from the environment). Without ``service`` the
    FaceService is opened on start-up (models loaded, store opened), once per worker process;
    tests pass their own, and may pass their own ``rate_store``."""
    settings = settings or Settings.from_env()
    formparsers.MultiPartParser.spool_max_size = settings.max_body_bytes + 1  # never to disk
    opened: list[FaceService] = [service] if service is not None else []

    def get_service() -> FaceService:
        if not opened:
            opened.append(open_service(settings))
        svc = opened[0]
        observers = getattr(getattr(svc, "ctx", None), "observers", None)
        if observers is not None and observe_event not in observers:
            observers.append(observe_event)
        timers = getattr(getattr(svc, "ctx", None), "timers", None)
        if timers is not None and observe_stages not in timers:
            timers += [observe_stages, tracing.stage_times]
        return svc

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = get_service()  # load the models and open the store before the first request
        async with webhook_deliveries(svc, settings):  # this worker's delivery loop
            yield
        forget_this_worker()  # a clean stop: its live gauges leave PROMETHEUS_MULTIPROC_DIR

    # Swagger UI and ReDoc load their scripts from a public CDN on the API's own origin: off
    # unless FACEGATE_API_DOCS=1 (the OpenAPI document itself is always at /openapi.json).
    docs = {} if settings.api_docs else {"docs_url": None, "redoc_url": None}
    app = FastAPI(
        lifespan=lifespan,
        title="facegate",
        version=__version__,
        description=DESCRIPTION,
        # FastAPI's own OpenTelemetry spans record the path (paths name subjects) and the query:
        # off whatever provider is configured; FACEGATE_OTEL=1 traces with web/tracing.py instead
        telemetry=tracing.FASTAPI_TELEMETRY_OFF,
        servers=[{"url": settings.root_path}] if settings.root_path else None,
        **docs,  # type: ignore[arg-type]
    )
    app.state.get_service = get_service
    app.state.opened_service = lambda: opened[0] if opened else None  # /readyz: never loads
    app.state.settings = settings
    app.state.analyses = Analyses(max_wait_s=settings.analysis_wait_s)
    app.state.rate_limits = limits = RateLimits(
        settings, rate_store or open_rate_store(settings), lambda: _bucket_secret(get_service())
    )
    app.add_exception_handler(FacegateError, facegate_error_handler)
    app.add_exception_handler(UnavailableError, unavailable_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    # inside AuthGate, which found the caller from the headers
    app.add_middleware(Idempotency, service=get_service, limit=settings.max_body_bytes)

    def check(kind: str, token: str) -> Any:
        svc = get_service()
        return svc.open_capture(token) if kind == "capture" else svc.authenticate(token)

    app.add_middleware(
        AuthGate,
        check=check,
        max_uploads=settings.max_concurrent_uploads,
        drain_limit=settings.max_body_bytes,
    )
    app.add_middleware(RateLimit, limits=limits)  # before the body
    app.add_middleware(Metrics)  # every request is counted, refused ones too
    if settings.otel:  # FACEGATE_OTEL=1: a span per request (web/tracing.py)
        tracing.configure()
        app.add_middleware(tracing.Tracing)
    app.add_middleware(RequestLog)  # outermost: an id and one log line for every request
    if settings.root_path:
        app.add_middleware(StripRootPath, root_path=settings.root_path)  # before any reads a path
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)

    for module in (health, tenant, webhook_routes, subjects, faces, liveness, stream, capture):
        app.include_router(module.router)
    openapi.install(app)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


class StripRootPath:
    """FACEGATE_ROOT_PATH: the prefix a reverse proxy serves facegate under. Routes and
    middleware see paths without it, whether the proxy stripped it (nginx ``proxy_pass
    http://facegate/;``) or not; capture links and OpenAPI's ``servers`` name it. The page's own
    URLs are relative, so it needs nothing more."""

    def __init__(self, app: ASGIApp, root_path: str) -> None:
        self.app, self.root_path = app, root_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, raw, n = str(scope.get("path", "")), scope.get("raw_path"), len(self.root_path)
        if scope["type"] in ("http", "websocket") and path.startswith(self.root_path + "/"):
            scope = {**scope, "path": path[n:]}
            if isinstance(raw, bytes) and raw.startswith(self.root_path.encode() + b"/"):
                scope["raw_path"] = raw[n:]
        await self.app(scope, receive, send)


async def unavailable_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """503 as ``facegate_error_handler`` answers it, plus ``Retry-After`` where the error names
    one (``busy``: the worker's analysis line is full), so a client backs off for that long."""
    assert isinstance(exc, UnavailableError)
    retry = exc.details.get("retry_after_s")
    if isinstance(retry, int):
        return problem(503, exc.code, str(exc), retry_after_s=retry)
    return await facegate_error_handler(request, exc)


def _bucket_secret(service: FaceService) -> bytes:
    """The key for hashing bucket names, from the service's master keys; plain SHA-256 where a
    test's stand-in service has none."""
    ring = getattr(service, "ring", None)
    if ring is None:
        return b""
    # the oldest version's derivation: byte-identical to HMAC(oldest key, label) for a key file,
    # computed inside the token for a PKCS#11 ring (whose keys never leave it)
    return ring.derive(min(ring.versions()), RATE_SECRET_LABEL)
