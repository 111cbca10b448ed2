"""The caller's tenant (settings a client needs: consent text, non-face alternative, operating
points) and its API keys."""

from __future__ import annotations

from typing import Any

from facegate.errors import InputError
from facegate.service import ROLES
from facegate.web.deps import AdminDep, AnyoneDep, ServiceDep
from facegate.web.problems import problem_responses
from facegate.web.routers import Router
from facegate.web.schemas import (
    KeyCreate,
    KeyCreated,
    KeyRevoked,
    QuarantineList,
    Tenant,
    TenantUpdate,
)

router = Router(tags=["tenant"], responses=problem_responses(401, 403, 429))


@router.get("/v1/tenant", response_model=Tenant)
def tenant_get(caller: AnyoneDep, svc: ServiceDep) -> dict[str, Any]:
    """The tenant's public settings: consent text and version, non-face alternative, policies."""
    return svc.tenant_view(caller)


@router.patch("/v1/tenant", response_model=Tenant, responses=problem_responses(400, 422))
def tenant_update(caller: AdminDep, svc: ServiceDep, body: TenantUpdate) -> dict[str, Any]:
    """Change some settings (only the fields sent); answers the settings now in force."""
    return svc.update_tenant(caller, body.model_dump(exclude_none=True))


@router.post(
    "/v1/keys", status_code=201, response_model=KeyCreated, responses=problem_responses(400)
)
def key_create(caller: AdminDep, svc: ServiceDep, body: KeyCreate) -> dict[str, Any]:
    """A new API key with the given roles; its secret is shown in this answer only."""
    roles = frozenset(body.roles)
    if not roles or not roles <= ROLES:
        raise InputError(f"roles must be among {sorted(ROLES)}", code="bad_request")
    return svc.create_key(caller, roles, body.label)


@router.delete("/v1/keys/{key_id}", response_model=KeyRevoked, responses=problem_responses(404))
def key_revoke(caller: AdminDep, svc: ServiceDep, key_id: str) -> dict[str, Any]:
    """Revoke a key of this tenant at once."""
    return svc.revoke_key(caller, key_id)


@router.get("/v1/tenant/quarantine", response_model=QuarantineList)
def quarantine_list(caller: AdminDep, svc: ServiceDep) -> dict[str, Any]:
    """Templates taken out of use because their sealed bytes no longer open (tampered or
    damaged rows), by subject: re-enrol or erase those subjects."""
    return svc.quarantined(caller)
