"""Liveness and readiness probes for load balancers and orchestrators (no authentication).

``/healthz`` is an ``async`` route that touches nothing: it runs on the event loop itself, so it
answers even when every executor thread is busy with analyses (a sync route would wait for a
thread of the shared pool). ``/readyz`` asks the database in a thread of its own, with a
deadline, and answers 503 problem+json while the service is not usable.
"""

from __future__ import annotations

from typing import Any

import anyio
from anyio import to_thread
from fastapi import Request

from facegate.errors import UnavailableError
from facegate.service import FaceService
from facegate.web.problems import problem_responses
from facegate.web.routers import Router
from facegate.web.schemas import Health, Readiness

router = Router(tags=["health"])

READY_DEADLINE_S = 3.0  # a database that takes longer than this to answer is not ready
PROBES_IN_FLIGHT = 2  # readiness checks running at once, in threads of their own


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """The process answers (nothing else is checked, so a slow database does not restart it)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses=problem_responses(503))
async def readyz(request: Request) -> dict[str, Any]:
    """Ready to serve: the models are loaded and the database answers (503 otherwise)."""
    svc: FaceService | None = request.app.state.opened_service()
    if svc is None:
        raise UnavailableError("the models are not loaded yet", code="models_not_loaded")
    state = request.app.state
    if getattr(state, "probes", None) is None:  # per app: each app has its own event loop
        state.probes = anyio.CapacityLimiter(PROBES_IN_FLIGHT)
    with anyio.move_on_after(READY_DEADLINE_S):
        # abandoned on the deadline: a hung connection must not hold the probe's answer
        ready: dict[str, Any] = await to_thread.run_sync(
            svc.readiness, limiter=state.probes, abandon_on_cancel=True
        )
        return ready
    raise UnavailableError("the database does not answer in time", code="database_unavailable")
