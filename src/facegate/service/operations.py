"""Operator tasks: retention, master-key rotation and transform renewal (the CLI runs them)."""

from __future__ import annotations

import secrets
import time
from typing import Any

from facegate.errors import ConfigError, ConflictError, InputError
from facegate.protection.crypto import seal
from facegate.protection.tenant import TenantSecrets, seed_aad, template_aad
from facegate.protection.transform import retransform
from facegate.service.context import ServiceContext
from facegate.service.data_keys import SETTLE_S, rotate_data_key
from facegate.service.gallery import open_template
from facegate.service.webhooks import reseal_config


class Operations:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def run_retention(self, now: float | None = None) -> dict[str, Any]:
        """Erase the templates of subjects inactive for longer than their tenant's retention."""
        ctx = self.ctx
        now = now or time.time()
        report = {}
        for tenant in ctx.store.list_tenants():
            before = now - float(tenant.settings["retention_days"]) * 86400
            erased = 0
            for subject_id in ctx.store.expired_subjects(tenant.id, before):
                with ctx.store.tx():
                    removed = ctx.store.delete_templates(tenant.id, subject_id)
                    ctx.audit(
                        None,
                        "retention.erase",
                        "ok",
                        subject_id=subject_id,
                        tenant_id=tenant.id,
                        actor="retention",
                        details={"templates_erased": len(removed)},
                    )
                ctx.gallery.sync()  # the template log carries the removals
                erased += 1
            report[tenant.name] = {"subjects_erased": erased}
        ctx.store.purge_deleted()  # no copy of the erased rows left in the database files
        return report

    def rotate_master_key(self) -> dict[str, Any]:
        """Re-wrap every tenant's data key under the current master key (a new one when the ring
        can make one: the key file, a PKCS#11 token). Templates are untouched, so the service
        keeps running. Run again after a crash: every data key is re-wrapped under the newest.

        Each tenant is re-wrapped under its tenant lock, from its row as read under that lock: a
        data-key rotation or a renewal that commits while this runs is never overwritten with
        the key it replaced (which would leave everything sealed under the new key unopenable)."""
        ctx = self.ctx
        ring = ctx.ring
        new_version = ring.add_version() if ring.writable else ring.current
        count = 0
        for listed in ctx.store.list_tenants():
            with ctx.store.tx():
                ctx.store.lock_tenant(listed.id)
                tenant = ctx.store.get_tenant(listed.id)
                if tenant is None:  # deleted meanwhile
                    continue
                dek = ring.unwrap(tenant.kek_version, tenant.wrapped_dek, tenant.id)
                version, wrapped = ring.wrap(dek, tenant.id)
                ctx.store.update_tenant_keys(tenant.id, kek_version=version, wrapped_dek=wrapped)
                for k in ctx.store.retired_tenant_keys(tenant.id):  # so old versions can go
                    old = ring.unwrap(k.kek_version, k.wrapped_dek, k.tenant_id)
                    version, wrapped = ring.wrap(old, k.tenant_id)
                    ctx.store.rewrap_retired_key(k.tenant_id, k.version, version, wrapped)
            count += 1
        ctx.audit(
            None,
            "keys.rotate_master",
            "ok",
            actor="operator",
            details={"master_key_version": new_version, "tenants": count},
        )
        return {"master_key_version": new_version, "tenants_rewrapped": count}

    def renew_transform(self, tenant_id: str) -> dict[str, Any]:
        """A new secret transform and a fresh data key for one tenant, in one transaction: every
        template is moved to the new transform and re-sealed, the new seed sealed, under the new
        key; copies taken before match nothing, and a data key stolen before opens nothing
        written since. The old key is kept (wrapped) only to open older audit details in the
        tenant's export. Challenges, liveness sessions, capture links and idempotent answers
        made under the old key stop opening (see docs/operations.md). A crash rolls it all back:
        run it again."""
        ctx = self.ctx
        with ctx.store.tx():
            ctx.store.lock_tenant(tenant_id)  # no enrolment of this tenant runs meanwhile
            tenant = ctx.tenant(tenant_id)
            old = ctx.secrets_of(tenant)
            if old.previous:
                raise ConflictError(
                    "a data-key rotation of this tenant is under way: finish it first"
                    " (facegate keys rotate-data-key)",
                    code="rotation_in_progress",
                )
            dek_version = tenant.dek_version  # read with the row, under the lock
            new_version = tenant.transform_version + 1
            new = TenantSecrets(
                tenant_id,
                secrets.token_bytes(32),
                secrets.token_bytes(32),
                new_version,
                dek_version=dek_version + 1,
            )
            for t in ctx.store.all_templates(tenant_id):
                aad = template_aad(tenant_id, t.subject_id, t.id, t.space_id)
                current = open_template(ctx.store, old, t, ctx.quarantined)
                if current is None:  # a damaged row: quarantined, not carried over
                    continue
                v = retransform(current, old.seed, t.transform_version, new.seed, new_version)
                # the template log records the swap, so running workers' indexes follow it
                ctx.store.replace_template_vector(
                    t.id, new.seal_vector(v, aad), new_version, dek_version + 1
                )
                ctx.gallery.store_vector(t.id, v)
            ctx.store.retire_tenant_key(
                tenant_id, dek_version, tenant.kek_version, tenant.wrapped_dek, time.time()
            )
            ctx.store.set_data_key_version(tenant_id, dek_version + 1)
            kek_version, wrapped = ctx.ring.wrap(new.dek, tenant_id)
            ctx.store.update_tenant_keys(
                tenant_id,
                kek_version=kek_version,
                wrapped_dek=wrapped,
                sealed_transform_seed=seal(new.dek, new.seed, seed_aad(tenant_id, new_version)),
                transform_version=new_version,
            )
            reseal_config(ctx, old, new)  # the webhook's URL and secret
            ctx.audit(
                None,
                "keys.renew_transform",
                "ok",
                tenant_id=tenant_id,
                actor="operator",
                details={"transform_version": new_version, "data_key": "renewed"},
            )
        ctx.gallery.rebuild()
        return {"tenant_id": tenant_id, "transform_version": new_version, "data_key": "renewed"}

    def rotate_data_key(
        self, tenant_id: str, batch: int = 200, settle_s: float = SETTLE_S
    ) -> dict[str, Any]:
        """A fresh data key for one tenant, its rows re-sealed online and resumably
        (service/data_keys.py); the transform stays, so copies taken before still match."""
        if batch < 1:
            raise InputError("--batch must be at least 1", code="bad_request")
        return rotate_data_key(self.ctx, tenant_id, batch, settle_s)

    def retire_master_keys(self) -> dict[str, Any]:
        """Remove from the key file (or destroy in the token) every master-key version nothing
        uses: no tenant's data key (current or retired) is wrapped under it, no audit record's
        chain key is derived from it (those records would stop verifying), and it is not the
        current one."""
        ctx = self.ctx
        ring = ctx.ring
        if not ring.writable:
            raise ConfigError(
                "master keys come from FACEGATE_MASTER_KEYS: remove old versions there",
                code="keys_from_environment",
            )
        ring.refresh()
        wrapping = {t.kek_version for t in ctx.store.list_tenants()}
        wrapping |= {k.kek_version for k in ctx.store.retired_tenant_keys()}
        chaining = ctx.store.audit_key_versions()
        kept = {
            v: reason
            for v in ring.versions()
            if (reason := _still_used(v, ring.current, wrapping, chaining))
        }
        removed = sorted(set(ring.versions()) - set(kept))
        if removed:
            ring.retire(removed)
            ctx.audit(
                None,
                "keys.retire_master",
                "ok",
                actor="operator",
                details={"removed_versions": removed},
            )
        return {"removed_versions": removed, "kept_versions": kept}


def _still_used(version: int, current: int, wrapping: set[int], chaining: set[int]) -> str:
    if version == current:
        return "current"
    if version in wrapping:
        return "wraps a data key"
    if version in chaining:
        return "keys audit records (their chain would stop verifying)"
    return ""
