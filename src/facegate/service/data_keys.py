"""Data-key rotation without a new transform (``facegate keys rotate-data-key``): a tenant gets
a fresh data key and every row sealed under the old one is re-sealed, while the service runs.

Every sealed row records the data-key version that sealed it (``dek_version`` on templates,
liveness sessions and the webhook endpoint), written by the code that sealed it from the keys it
used (``TenantSecrets.dek_version``); and every sealed write reads the tenant's keys inside its
transaction after the tenant lock (service/sealed_writes.py, service/enrolment.py), the lock
the switch and the finish take. So no row is sealed under the old key after the switch, and
none written before it escapes the count.

1. *Switch*, in one transaction under the tenant lock: the tenant's wrapped key becomes the key
   set (new key, old key) and its version goes up, together; the transform seed and the webhook
   endpoint are re-sealed under the new key. Every worker that opens the tenant's keys from then
   on holds both keys: rows not yet re-sealed still open, new ones are sealed under the new key.
2. *Re-seal*, after a short settling pause (so that *readers* holding keys read just before the
   switch, which know only the old key, finish before rows change under them), in batches of one
   transaction each: templates, liveness sessions and the endpoint whose ``dek_version`` is below
   the new one (or unknown). Each swap is compare-and-set on the old bytes, so an erasure, a
   renewal or a change meanwhile wins. The protected vectors do not change, so no index moves.
3. *Finish*, in one transaction under the tenant lock: whatever is still below the new version
   is re-sealed there; only when nothing is left does the wrapped key become the new key alone
   and the old key retire (kept wrapped only to open older audit details in the export).

A row that opens under neither key is not carried over: a template is quarantined (as any
reader would), a liveness session deleted (it could never be used), and an endpoint that does
not open stops the rotation (delete it, then run the command again).

A crash anywhere leaves a state the next run continues from: a key set with two keys means a
rotation is under way, and the rows still to do are those below its version.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from facegate.errors import ConflictError, ProtectionError
from facegate.protection.crypto import seal
from facegate.protection.tenant import TenantSecrets, seed_aad, template_aad
from facegate.service.context import ServiceContext
from facegate.service.probes import session_aad
from facegate.service.webhook_delivery import config_aad
from facegate.service.webhooks import reseal_config
from facegate.storage.tenant_keys import SealedRow

SETTLE_S = 5.0  # longer than a request holds the tenant's keys before reading its templates


@dataclass(frozen=True)
class Kind:
    """One kind of sealed row: its associated data, and what becomes of a row that opens under
    no key the tenant holds (returns whether it was dropped)."""

    name: str
    aad: Callable[[str, SealedRow], bytes]
    unopenable: Callable[[ServiceContext, str, SealedRow], bool]


def _quarantine(ctx: ServiceContext, tenant_id: str, r: SealedRow) -> bool:
    if not ctx.store.quarantine_template(r.id, time.time()):
        return False
    ctx.audit(
        None,
        "template.quarantined",
        "quarantined",
        subject_id=r.subject_id,
        tenant_id=tenant_id,
        details={"template_id": r.id},
    )
    return True


def _drop_session(ctx: ServiceContext, tenant_id: str, r: SealedRow) -> bool:
    return ctx.store.delete_sealed_row("sessions", tenant_id, r.id, r.sealed)


def _refuse_endpoint(ctx: ServiceContext, tenant_id: str, r: SealedRow) -> bool:
    raise ConflictError(
        "the tenant's webhook endpoint opens under neither data key: delete it"
        " (DELETE /v1/tenant/webhook), then run the command again",
        code="rotation_incomplete",
    )


KINDS = (
    Kind(
        "templates",
        lambda tid, r: template_aad(tid, r.subject_id or "", r.id, r.space_id or ""),
        _quarantine,
    ),
    Kind("sessions", lambda tid, r: session_aad(tid, r.id), _drop_session),
    Kind("webhook", lambda tid, r: config_aad(tid), _refuse_endpoint),
)


def rotate_data_key(
    ctx: ServiceContext, tenant_id: str, batch: int = 200, settle_s: float = SETTLE_S
) -> dict[str, Any]:
    """Rotate one tenant's data key online (see the module doc); returns what it did."""
    version, resumed = _switch(ctx, tenant_id)
    if not resumed:
        time.sleep(settle_s)
    done = {k.name: _reseal(ctx, tenant_id, version, batch, k) for k in KINDS}
    late = _finish(ctx, tenant_id, version, batch, done)
    return {
        "tenant_id": tenant_id,
        "data_key_version": version,
        "resumed": resumed,
        "templates_resealed": done["templates"][0] + late["templates"][0],
        "sessions_resealed": done["sessions"][0] + late["sessions"][0],
        "webhook_resealed": done["webhook"][0] + late["webhook"][0],
        "resealed_at_finish": sum(n for n, _ in late.values()),
        "templates_quarantined": done["templates"][1] + late["templates"][1],
        "sessions_dropped": done["sessions"][1] + late["sessions"][1],
    }


def _switch(ctx: ServiceContext, tenant_id: str) -> tuple[int, bool]:
    """The new key installed next to the old one; (its version, whether a rotation was already
    under way and is being resumed)."""
    with ctx.store.tx():
        ctx.store.lock_tenant(tenant_id)  # no sealed write of this tenant meanwhile
        tenant = ctx.tenant(tenant_id)
        old = ctx.secrets_of(tenant)
        if old.previous:
            return tenant.dek_version, True
        version = tenant.dek_version + 1
        new = TenantSecrets(
            tenant_id, secrets.token_bytes(32), old.seed, old.transform_version, (), version
        )
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
    """The tenant's keys inside a transaction under the tenant lock; refuses when the rotation
    was finished or superseded (a renewal) by another process meanwhile."""
    keys = ctx.secrets_of(ctx.tenant(tenant_id))
    if not keys.previous or keys.dek_version != version:
        raise ConflictError(
            "the data-key rotation was finished or replaced by another process",
            code="rotation_superseded",
        )
    return keys


def _reseal_rows(
    ctx: ServiceContext, keys: TenantSecrets, kind: Kind, rows: list[SealedRow], version: int
) -> tuple[int, int]:
    """Re-seal rows under the current key (inside the caller's locked transaction); returns
    (re-sealed, dropped as unopenable)."""
    done = dropped = 0
    for r in rows:
        aad = kind.aad(keys.tenant_id, r)
        try:
            plain = keys.open(r.sealed, aad)
        except ProtectionError:  # opens under neither key
            dropped += kind.unopenable(ctx, keys.tenant_id, r)
            continue
        new = seal(keys.dek, plain, aad)
        done += ctx.store.reseal_row(kind.name, keys.tenant_id, r.id, r.sealed, new, version)
    return done, dropped


def _reseal(
    ctx: ServiceContext, tenant_id: str, version: int, batch: int, kind: Kind
) -> tuple[int, int]:
    """Every row of one kind below ``version``, ``batch`` per transaction."""
    done = dropped = 0
    after = ""
    while True:
        with ctx.store.tx():
            ctx.store.lock_tenant(tenant_id)
            keys = _current(ctx, tenant_id, version)
            rows = ctx.store.rows_to_reseal(kind.name, tenant_id, version, after, batch)
            n, d = _reseal_rows(ctx, keys, kind, rows, version)
        done, dropped = done + n, dropped + d
        if len(rows) < batch:
            return done, dropped
        after = rows[-1].id


def _finish(
    ctx: ServiceContext,
    tenant_id: str,
    version: int,
    batch: int,
    done: dict[str, tuple[int, int]],
) -> dict[str, tuple[int, int]]:
    """In one transaction under the tenant lock: re-seal what is still below ``version`` (up to
    ``batch`` rows of each kind: a row whose writer sealed it with keys read before the switch,
    or one with an unknown version), then, only if no template, session or endpoint is left
    under the old key, drop the old key from the key set and retire it. The transform seed needs
    no check: it is sealed under the key set's first key, or no worker could open the tenant.
    Refuses (``rotation_incomplete``: run the command again) when rows are left; returns what
    it re-sealed and dropped, by kind."""
    with ctx.store.tx():
        ctx.store.lock_tenant(tenant_id)
        keys = _current(ctx, tenant_id, version)
        late = {
            k.name: _reseal_rows(
                ctx,
                keys,
                k,
                ctx.store.rows_to_reseal(k.name, tenant_id, version, "", batch),
                version,
            )
            for k in KINDS
        }
        left = ctx.store.rows_below_data_key(tenant_id, version)
        if any(left.values()):
            raise ConflictError(
                "rows sealed under the old data key remain: run the command again",
                code="rotation_incomplete",
                **left,
            )
        tenant = ctx.tenant(tenant_id)
        old_kek, old_wrapped = ctx.ring.wrap(keys.previous[0], tenant_id)
        ctx.store.retire_tenant_key(tenant_id, version - 1, old_kek, old_wrapped, time.time())
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
                **{f"{k}_resealed": done[k][0] + late[k][0] for k in done},
                **{f"{k}_dropped": done[k][1] + late[k][1] for k in done},
            },
        )
    return late
