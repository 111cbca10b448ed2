"""Liveness and readiness probes for load balancers and orchestrators (no authentication)."""

from __future__ import annotations

from typing import Any

from facegate.web.deps import ServiceDep
from facegate.web.problems import problem_responses
from facegate.web.routers import Router
from facegate.web.schemas import Health, Readiness

router = Router(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> dict[str, str]:
    """The process answers (nothing else is checked, so a slow database does not restart it)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses=problem_responses(503))
def readyz(svc: ServiceDep) -> dict[str, Any]:
    """Ready to serve: the database answers and the models are loaded."""
    return svc.readiness()
