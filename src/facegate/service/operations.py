"""Operator tasks: retention, master-key rotation and transform renewal (the CLI runs them)."""

from __future__ import annotations

import secrets
import time
from typing import Any

from facegate.protection.crypto import seal
from facegate.protection.tenant import seed_aad, template_aad
from facegate.protection.transform import retransform
from facegate.service.context import ServiceContext
from facegate.service.gallery import open_template


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
        """Re-wrap every tenant's data key under the current master key (a new one when the key
        ring is file-backed). Templates are untouched, so the service keeps running."""
        ctx = self.ctx
        ring = ctx.ring
        new_version = ring.add_version() if ring.path is not None else ring.current
        count = 0
        for tenant in ctx.store.list_tenants():
            dek = ring.unwrap(tenant.kek_version, tenant.wrapped_dek, tenant.id)
            version, wrapped = ring.wrap(dek, tenant.id)
            ctx.store.update_tenant_keys(tenant.id, kek_version=version, wrapped_dek=wrapped)
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
        """A new secret transform for one tenant; stored templates are moved to it, so copies
        taken before stop matching anything."""
        ctx = self.ctx
        with ctx.store.tx():
            ctx.store.lock_tenant(tenant_id)  # no enrolment of this tenant runs meanwhile
            tenant = ctx.tenant(tenant_id)
            old = ctx.secrets_of(tenant)
            new_seed, new_version = secrets.token_bytes(32), tenant.transform_version + 1
            for t in ctx.store.all_templates(tenant_id):
                aad = template_aad(tenant_id, t.subject_id, t.id, t.space_id)
                current = open_template(ctx.store, old, t, ctx.quarantined)
                if current is None:  # a damaged row: quarantined, not carried over
                    continue
                v = retransform(current, old.seed, t.transform_version, new_seed, new_version)
                # the template log records the swap, so running workers' indexes follow it
                ctx.store.replace_template_vector(t.id, old.seal_vector(v, aad), new_version)
                ctx.gallery.store_vector(t.id, v)
            ctx.store.update_tenant_keys(
                tenant_id,
                kek_version=tenant.kek_version,
                wrapped_dek=tenant.wrapped_dek,
                sealed_transform_seed=seal(old.dek, new_seed, seed_aad(tenant_id, new_version)),
                transform_version=new_version,
            )
            ctx.audit(
                None,
                "keys.renew_transform",
                "ok",
                tenant_id=tenant_id,
                actor="operator",
                details={"transform_version": new_version},
            )
        ctx.gallery.rebuild()
        return {"tenant_id": tenant_id, "transform_version": new_version}
