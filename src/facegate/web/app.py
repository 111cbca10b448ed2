"""The FastAPI application: lifespan, limits, error handlers, the routers and the capture page.

OpenAPI at /openapi.json and /docs. Uploads are read into memory only: Starlette's multipart
parser would spool files over 1 MB to a temporary file, so its spool size is raised to the body
limit, which ``BodyLimit`` enforces first. The routes themselves live in ``facegate.web.routers``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette import formparsers

from facegate import __version__
from facegate.errors import FacegateError
from facegate.service import FaceService
from facegate.service.compose import open_service
from facegate.settings import Settings
from facegate.storage.ratelimit import PostgresRateStore, RateStore, SQLiteRateStore
from facegate.web import openapi
from facegate.web.middleware import BodyLimit, RateLimit, RateLimits, rate_secret
from facegate.web.problems import (
    facegate_error_handler,
    unexpected_error_handler,
    validation_error_handler,
)
from facegate.web.routers import capture, faces, health, liveness, subjects, tenant

STATIC = Path(__file__).resolve().parent / "static"
CAPTURE_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; media-src 'self' blob:; "
    "img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'",
    "Referrer-Policy": "no-referrer",
}
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
        return opened[0]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        get_service()  # load the models and open the store before the first request
        yield

    app = FastAPI(lifespan=lifespan, title="facegate", version=__version__, description=DESCRIPTION)
    app.state.get_service = get_service
    app.state.settings = settings
    app.state.rate_limits = limits = RateLimits(
        settings, rate_store or open_rate_store(settings), lambda: _bucket_secret(get_service())
    )
    app.add_exception_handler(FacegateError, facegate_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RateLimit, limits=limits)  # added last: outermost, before the body

    for module in (health, tenant, subjects, faces, liveness, capture):
        app.include_router(module.router)
    openapi.install(app)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def capture_page() -> FileResponse:
        """The capture page; strict CSP, never cached, no referrer (the link carries a token)."""
        return FileResponse(STATIC / "index.html", headers=CAPTURE_PAGE_HEADERS)

    return app


def _bucket_secret(service: FaceService) -> bytes:
    """The key for hashing bucket names, from the service's master keys; plain SHA-256 where a
    test's stand-in service has none."""
    ring = getattr(service, "ring", None)
    return rate_secret(ring.keys[min(ring.keys)]) if ring is not None else b""
