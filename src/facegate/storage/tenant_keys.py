"""A tenant's keys: its wrapped data key and sealed transform seed, and its retired data keys.
A renewal (``facegate keys renew-transform``) gives a tenant a fresh data key and re-seals
everything current under it; the old key is kept here, wrapped by the master key like the
current one, only so that the tenant's export can still open audit details sealed before the
renewal. Nothing else is ever opened with a retired key."""

from __future__ import annotations

from typing import NamedTuple

from facegate.storage.connection import SQLBase


class RetiredKey(NamedTuple):
    tenant_id: str
    version: int  # the transform version the key served until its renewal
    kek_version: int
    wrapped_dek: bytes


class TenantKeyQueries(SQLBase):
    def update_tenant_keys(
        self,
        tenant_id: str,
        *,
        kek_version: int,
        wrapped_dek: bytes,
        sealed_transform_seed: bytes | None = None,
        transform_version: int | None = None,
    ) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE tenants SET kek_version=?, wrapped_dek=? WHERE id=?",
                (kek_version, wrapped_dek, tenant_id),
            )
            if sealed_transform_seed is not None:
                db.execute(
                    "UPDATE tenants SET sealed_transform_seed=?, transform_version=? WHERE id=?",
                    (sealed_transform_seed, transform_version, tenant_id),
                )

    def retire_tenant_key(
        self, tenant_id: str, version: int, kek_version: int, wrapped_dek: bytes, now: float
    ) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO tenant_keys (tenant_id, version, kek_version, wrapped_dek,"
                " retired_at) VALUES (?, ?, ?, ?, ?)",
                (tenant_id, version, kek_version, wrapped_dek, now),
            )

    def retired_tenant_keys(self, tenant_id: str | None = None) -> list[RetiredKey]:
        """Newest first."""
        sql = "SELECT tenant_id, version, kek_version, wrapped_dek FROM tenant_keys"
        order = " ORDER BY tenant_id, version DESC"
        with self.tx() as db:
            if tenant_id is None:
                rows = db.execute(sql + order).fetchall()
            else:
                rows = db.execute(sql + " WHERE tenant_id=?" + order, (tenant_id,)).fetchall()
        return [RetiredKey(r[0], int(r[1]), int(r[2]), bytes(r[3])) for r in rows]

    def rewrap_retired_key(
        self, tenant_id: str, version: int, kek_version: int, wrapped_dek: bytes
    ) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE tenant_keys SET kek_version=?, wrapped_dek=?"
                " WHERE tenant_id=? AND version=?",
                (kek_version, wrapped_dek, tenant_id, version),
            )

    def audit_key_versions(self) -> set[int]:
        """The master-key versions whose chain keys keyed some audit record."""
        with self.tx() as db:
            rows = db.execute(
                "SELECT DISTINCT key_version FROM audit WHERE key_version IS NOT NULL"
            ).fetchall()
        return {int(r[0]) for r in rows}
