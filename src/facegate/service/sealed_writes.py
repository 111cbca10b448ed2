"""Writes of rows sealed under a tenant's data key, safe against a data-key rotation.

A rotation (service/data_keys.py) switches the tenant's key under the tenant lock, re-seals the
rows below the new version, and, again under the lock, retires the old key. A write that sealed
with keys read *before* the switch but stored *after* it would hold data under the old key; if
it were stored after the finish, nothing could open it any more. So every sealed write takes the
tenant lock inside its transaction and reads the tenant's keys there (``keys_for_write``): what
it seals is sealed under the key current until it commits, and is stored with that key's version
(``TenantSecrets.dek_version``). Templates (service/enrolment.py) already seal under the lock;
liveness sessions and the webhook endpoint use these helpers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facegate.protection.tenant import TenantSecrets
from facegate.service.context import ServiceContext
from facegate.service.probes import session_aad


def keys_for_write(ctx: ServiceContext, tenant_id: str) -> TenantSecrets:
    """Inside ``store.tx()``: the tenant lock (a rotation's switch and finish take it), then the
    tenant's keys as they are now; they stay current until the transaction ends."""
    ctx.store.lock_tenant(tenant_id)
    return ctx.secrets_of(ctx.tenant(tenant_id))


def add_liveness_session(
    ctx: ServiceContext,
    tenant_id: str,
    session_id: str,
    live: bool,
    embedding: np.ndarray | None,
    summary: dict[str, Any],
    expires_at: float,
    subject_id: str | None,
    purpose: str | None,
) -> None:
    """Store a liveness check's outcome; a passed one's embedding sealed under the current key
    (read under the tenant lock, not the keys the request read before its analysis)."""
    with ctx.store.tx():
        keys = keys_for_write(ctx, tenant_id)
        sealed = None
        if live and embedding is not None:
            sealed = keys.seal_vector(embedding, session_aad(tenant_id, session_id))
        ctx.store.add_liveness_session(
            tenant_id,
            session_id,
            live,
            ctx.space_id,
            sealed,
            summary,
            expires_at,
            subject_id,
            purpose,
            dek_version=keys.dek_version if sealed is not None else None,
        )
