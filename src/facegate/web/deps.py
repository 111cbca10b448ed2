"""Route dependencies as ``Annotated`` aliases: the service, the authenticated caller with the
roles a route needs, the capture link's context, upload reading, and the worker's executor for
the CPU-bound engine.

Authentication comes first, then the key's rate limit, then its roles, so an unknown key learns
nothing about limits or roles. (The per-address limits run earlier, in ``RateLimit``; a capture
link's limit is taken with its token, before the token is checked.) The bearer and
``X-API-Key`` schemes are declared with FastAPI's security classes so that OpenAPI lists them
and marks every authenticated operation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import anyio
from anyio import to_thread
from fastapi import Depends, Request, UploadFile
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from facegate.errors import (
    ForbiddenError,
    RateLimitedError,
    UnauthenticatedError,
    UnavailableError,
)
from facegate.service import ROLES, Caller, FaceService
from facegate.service.context import ENGINE_LOCK
from facegate.web.metrics import running_analysis, waiting_for_engine
from facegate.web.middleware import (
    ADDRESS_STATE,
    BUSY_RETRY_S,
    CALLER_STATE,
    RateLimits,
    retry_after,
)
from facegate.web.tracing import analysis_span

T = TypeVar("T")

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="BearerKey",
    bearerFormat="fg_<id>_<secret>",
    description="An API key: `Authorization: Bearer fg_<id>_<secret>`.",
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="ApiKeyHeader",
    description="The same API key in a header, for clients that cannot set Authorization.",
)
capture_scheme = APIKeyHeader(
    name="X-Capture-Token",
    auto_error=False,
    scheme_name="CaptureToken",
    description="The token of a capture link (POST /v1/capture-links), held by the capture page.",
)


def service_of(request: Request) -> FaceService:
    """The process's FaceService, opened by the app on start (see ``facegate.web.app``)."""
    service: FaceService = request.app.state.get_service()
    return service


ServiceDep = Annotated[FaceService, Depends(service_of)]


def rate_limits(request: Request) -> RateLimits:
    """The app's shared rate limits (``facegate.web.app`` builds them from the settings)."""
    limits: RateLimits = request.app.state.rate_limits
    return limits


def caller_with(*roles: str) -> Callable[..., Caller]:
    """Dependency: the authenticated, rate-limited caller, holding one of ``roles``."""

    def dependency(
        request: Request,
        svc: ServiceDep,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
        api_key: Annotated[str | None, Depends(api_key_scheme)],
    ) -> Caller:
        token = bearer.credentials if bearer is not None else (api_key or "")
        checked = getattr(request.state, CALLER_STATE, None)  # by AuthGate, before the body
        if checked is not None and checked[0] == token:
            caller = checked[1]
        else:
            caller = svc.authenticate(token) if token else None
        if caller is None:
            raise UnauthenticatedError("a valid API key is required")
        limits = rate_limits(request)
        address = getattr(request.state, ADDRESS_STATE, None)
        if address is not None:
            limits.authenticated(address)
        wait = limits.for_key(caller.key_id)
        if wait:
            raise RateLimitedError(
                "too many requests for this key", retry_after_s=retry_after(wait)
            )
        if not caller.roles & set(roles):
            raise ForbiddenError(f"this key needs one of the roles: {', '.join(roles)}")
        return caller

    return dependency


def capture_token(request: Request, token: Annotated[str | None, Depends(capture_scheme)]) -> str:
    """The raw capture-link token ('' when absent: the service refuses it as invalid), within
    its link's rate limit. The limit is taken before the token is checked, so a forged token
    costs a bucket of its own too; a failed check then also counts against the address."""
    token = token or ""
    if token:
        wait = rate_limits(request).for_capture_link(token)
        if wait:
            raise RateLimitedError(
                "too many requests for this capture link", retry_after_s=retry_after(wait)
            )
    return token


CaptureTokenDep = Annotated[str, Depends(capture_token)]


def capture_context(svc: ServiceDep, token: CaptureTokenDep) -> tuple[Caller, str, str]:
    """Dependency for the capture page: (caller, subject id, flow) from its capture token."""
    return svc.open_capture(token)


CaptureDep = Annotated[tuple[Caller, str, str], Depends(capture_context)]
AdminDep = Annotated[Caller, Depends(caller_with("admin"))]
EnrollerDep = Annotated[Caller, Depends(caller_with("enroll", "admin"))]
VerifierDep = Annotated[Caller, Depends(caller_with("verify", "admin"))]
SearcherDep = Annotated[Caller, Depends(caller_with("search"))]
DuplicatesDep = Annotated[Caller, Depends(caller_with("search", "admin"))]
CapturerDep = Annotated[Caller, Depends(caller_with("enroll", "verify", "admin"))]
AnyoneDep = Annotated[Caller, Depends(caller_with(*sorted(ROLES)))]


async def read_upload(upload: UploadFile) -> bytes:
    """An upload's bytes, in memory (the app keeps Starlette from spooling them to disk)."""
    data = await upload.read()
    await upload.close()
    return data


ANALYSES_PER_WORKER = 1  # see ``Analyses``: the engine's models are not thread-safe


class Analyses:
    """The worker's executor for CPU-bound work (face analysis, liveness checks, and the service
    call around them): in a thread, never on the event loop, one at a time.

    Why a thread: the routes are ``async``; run inline, one verification (30-100 ms) or liveness
    check (~1 s) stalled every other request of the worker, ``/healthz`` included (12.9 s at 64
    clients). The engine's native code (onnxruntime, TFLite, OpenCV, numpy) releases the GIL, so
    the loop keeps answering while an analysis runs.

    Why one: the engine's TFLite interpreters are not safe to share between threads (two
    verifications at once fail with "There is at least 1 reference to internal data"), and each
    analysis already uses ``FACEGATE_THREADS`` cores; a machine's parallelism comes from its
    workers. Others wait in line, at most ``max_wait_s`` (then 503 ``busy`` with
    ``Retry-After``); the line itself is bounded by the upload cap (``AuthGate``), since every
    analysis comes with an upload."""

    def __init__(self, capacity: int = ANALYSES_PER_WORKER, max_wait_s: float = 10.0) -> None:
        self.slots = anyio.CapacityLimiter(capacity)
        self.threads = anyio.CapacityLimiter(capacity)  # the slot holder's thread, not the pool's
        self.max_wait_s = max_wait_s

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` in a worker thread once a slot is free (503 ``busy`` after the wait)."""
        with waiting_for_engine(), anyio.move_on_after(self.max_wait_s) as waiting:
            await self.slots.acquire()
        if waiting.cancelled_caught:
            raise UnavailableError(
                "this worker is at its limit of analyses; retry shortly",
                code="busy",
                retry_after_s=BUSY_RETRY_S,
            )

        def locked() -> T:
            # streamed frames use the same models (service/stream.py)
            with ENGINE_LOCK, running_analysis(), analysis_span():
                return work()

        try:
            return await to_thread.run_sync(locked, limiter=self.threads)
        finally:
            self.slots.release()


def analyses_of(request: Request) -> Analyses:
    """The process's analysis executor (``facegate.web.app`` sets its wait from the settings)."""
    analyses: Analyses = request.app.state.analyses
    return analyses


AnalysesDep = Annotated[Analyses, Depends(analyses_of)]
