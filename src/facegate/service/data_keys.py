"""Data-key rotation without a new transform (``facegate keys rotate-data-key``): a tenant gets
a fresh data key and every row sealed under the old one is re-sealed, while the service runs.

1. *Switch*, in one transaction under the tenant lock: the tenant's wrapped key becomes the key
   set (new key, old key); the transform seed and the webhook endpoint are re-sealed under the
   new key; the tenant's data-key version goes up, so rows written from then on are stamped with
   it (migration 10's triggers). Every worker that opens the tenant's keys from then on holds
   both keys: rows not yet re-sealed still open, new ones are sealed under the new key.
2. *Re-seal*, after a short settling pause (requests that read the keys just before the switch
   finish first), in batches of one transaction each: templates, then liveness sessions, whose
   ``dek_version`` is below the new one. Each swap is compare-and-set on the old bytes, so an
   erasure or a renewal meanwhile wins. The protected vectors do not change, so no index moves.
3. *Finish*, when no row is left under the old key: the wrapped key becomes the new key alone,
   and the old key is retired (kept wrapped only to open older audit details in the export).

A crash anywhere leaves a state the next run continues from: a key set with two keys means a
rotation is under way, and the rows still to do are those below its version.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from facegate.errors import ConflictError, ProtectionError
from facegate.protection.crypto import seal
from facegate.protection.tenant import TenantSecrets, seed_aad, template_aad
from facegate.service.context import ServiceContext
from facegate.service.gallery import open_template
from facegate.service.probes import session_aad
from facegate.service.webhooks import reseal_config

SETTLE_S = 5.0  # longer than a request holds the tenant's keys before reading its templates


def rotate_data_key(
    ctx: ServiceContext, tenant_id: str, batch: int = 200, settle_s: float = SETTLE_S
) -> dict[str, Any]:
    """Rotate one tenant's data key online (see the module doc); returns what it did."""
    version, resumed = _switch(ctx, tenant_id)
    if not resumed:
        time.sleep(settle_s)
    templates = _reseal_templates(ctx, tenant_id, version, batch)
    sessions = _reseal_sessions(ctx, tenant_id, version, batch)
    left = _finish(ctx, tenant_id, version, templates, sessions)
    return {
        "tenant_id": tenant_id,
        "data_key_version": version,
        "resumed": resumed,
        "templates_resealed": templates,
        "sessions_resealed": sessions,
        **left,
    }


def _switch(ctx: ServiceContext, tenant_id: str) -> tuple[int, bool]:
    """The new key installed next to the old one; (its version, whether a rotation was already
    under way and is being resumed)."""
    with ctx.store.tx():
        ctx.store.lock_tenant(tenant_id)  # no enrolment or renewal of this tenant meanwhile
        tenant = ctx.tenant(tenant_id)
        old = ctx.secrets_of(tenant)
        if old.previous:
            return ctx.store.data_key_version(tenant_id), True
        version = ctx.store.data_key_version(tenant_id) + 1
        new = TenantSecrets(tenant_id, secrets.token_bytes(32), old.seed, old.transform_version)
        kek_version, wrapped = ctx.ring.wrap(new.dek + old.dek, tenant_id)
        ctx.store.update_tenant_keys(
            tenant_id,
            kek_version=kek_version,
            wrapped_dek=wrapped,
            sealed_transform_seed=seal(
                new.dek, old.seed, seed_aad(tenant_id, tenant.transform_version)
            ),
            transform_version=tenant.transform_version,
        )
        ctx.store.set_data_key_version(tenant_id, version)
        reseal_config(ctx, old, new)  # the webhook's URL and secret
        ctx.audit(
            None,
            "keys.rotate_data_key",
            "started",
            tenant_id=tenant_id,
            actor="operator",
            details={"data_key_version": version},
        )
    return version, False


def _current(ctx: ServiceContext, tenant_id: str, version: int) -> TenantSecrets:
    """The tenant's keys inside a batch's transaction; refuses when the rotation was finished
    or superseded (a renewal) by another process meanwhile."""
    keys = ctx.secrets_of(ctx.tenant(tenant_id))
    if not keys.previous or ctx.store.data_key_version(tenant_id) != version:
        raise ConflictError(
            "the data-key rotation was finished or replaced by another process",
            code="rotation_superseded",
        )
    return keys


def _reseal_templates(ctx: ServiceContext, tenant_id: str, version: int, batch: int) -> int:
    done, after = 0, 0
    while True:
        with ctx.store.tx():
            ctx.store.lock_tenant(tenant_id)
            keys = _current(ctx, tenant_id, version)
            rows = ctx.store.templates_to_reseal(tenant_id, version, after, batch)
            for t in rows:
                vector = open_template(ctx.store, keys, t, ctx.quarantined)
                if vector is None:  # opens under neither key: quarantined, as any reader would
                    continue
                aad = template_aad(t.tenant_id, t.subject_id, t.id, t.space_id)
                if ctx.store.reseal_template(
                    t.id, t.sealed_vector, keys.seal_vector(vector, aad), version
                ):
                    done += 1
        if len(rows) < batch:
            return done
        after = rows[-1].seq


def _reseal_sessions(ctx: ServiceContext, tenant_id: str, version: int, batch: int) -> int:
    done, after = 0, ""
    while True:
        with ctx.store.tx():
            ctx.store.lock_tenant(tenant_id)
            keys = _current(ctx, tenant_id, version)
            rows = ctx.store.sessions_to_reseal(tenant_id, version, after, batch)
            for session_id, blob in rows:
                aad = session_aad(tenant_id, session_id)
                try:
                    plain = keys.open(blob, aad)
                except ProtectionError:  # opens under neither key: already unusable
                    continue
                new = seal(keys.dek, plain, aad)
                if ctx.store.reseal_session(tenant_id, session_id, blob, new, version):
                    done += 1
        if len(rows) < batch:
            return done
        after = rows[-1][0]


def _finish(
    ctx: ServiceContext, tenant_id: str, version: int, templates: int, sessions: int
) -> dict[str, Any]:
    """The old key out of the key set, retired; refuses to drop it while a template still
    needs it (a worker with a stale view sealed one meanwhile: run the command again)."""
    with ctx.store.tx():
        ctx.store.lock_tenant(tenant_id)
        keys = _current(ctx, tenant_id, version)
        left = ctx.store.rows_below_data_key(tenant_id, version)
        if left["templates"]:
            raise ConflictError(
                "templates sealed under the old data key remain: run the command again",
                code="rotation_incomplete",
                templates=left["templates"],
            )
        tenant = ctx.tenant(tenant_id)
        old_version = version - 1
        old_kek, old_wrapped = ctx.ring.wrap(keys.previous[0], tenant_id)
        ctx.store.retire_tenant_key(tenant_id, old_version, old_kek, old_wrapped, time.time())
        kek_version, wrapped = ctx.ring.wrap(keys.dek, tenant_id)
        ctx.store.update_tenant_keys(tenant_id, kek_version=kek_version, wrapped_dek=wrapped)
        ctx.audit(
            None,
            "keys.rotate_data_key",
            "ok",
            tenant_id=tenant_id,
            actor="operator",
            details={
                "data_key_version": version,
                "transform_version": tenant.transform_version,
                "templates": templates,
                "sessions": sessions,
                "sessions_unopened": left["sessions"],
            },
        )
    return {"sessions_not_resealed": left["sessions"]}
