"""A tenant's keys: its wrapped data key and sealed transform seed, and its retired data keys.
A renewal (``facegate keys renew-transform``) or a data-key rotation (``facegate keys
rotate-data-key``) gives a tenant a fresh data key and re-seals everything current under it; the
old key is kept here (by its data-key version), wrapped by the master key like the current one,
only so that the tenant's export can still open audit details sealed before. Nothing else is
ever opened with a retired key.

Every template and liveness session says which data-key version sealed it (``dek_version``,
stamped on insert from the tenant's by a trigger, migration 10): a rotation re-seals the rows
below the new version in batches, so a rerun after a crash continues where it stopped."""

from __future__ import annotations

from typing import Any, NamedTuple

from facegate.storage.base import TemplateRow
from facegate.storage.connection import SQLBase


class RetiredKey(NamedTuple):
    tenant_id: str
    version: int  # its data-key version (before migration 10: the transform version it served)
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
        return [
            RetiredKey(
                r["tenant_id"], int(r["version"]), int(r["kek_version"]), bytes(r["wrapped_dek"])
            )
            for r in rows
        ]

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
        return {int(r["key_version"]) for r in rows}

    # -- data-key versions (facegate keys rotate-data-key) ------------------------------------

    def data_key_version(self, tenant_id: str) -> int:
        with self.tx() as db:
            r = db.execute(
                "SELECT dek_version FROM tenant_dek_versions WHERE tenant_id=?", (tenant_id,)
            ).fetchone()
        return int(r["dek_version"]) if r is not None else 1  # none listed: the tenant's first key

    def set_data_key_version(self, tenant_id: str, version: int) -> None:
        """Inside the transaction that installs the key: rows inserted from then on are stamped
        with it."""
        with self.tx() as db:
            db.execute(
                "INSERT INTO tenant_dek_versions (tenant_id, dek_version) VALUES (?, ?)"
                " ON CONFLICT (tenant_id) DO UPDATE SET dek_version=excluded.dek_version",
                (tenant_id, version),
            )

    def stamp_templates(self, tenant_id: str, version: int) -> None:
        """After a renewal re-sealed every template under the new key in one transaction."""
        with self.tx() as db:
            db.execute("UPDATE templates SET dek_version=? WHERE tenant_id=?", (version, tenant_id))

    def templates_to_reseal(
        self, tenant_id: str, below: int, after_seq: int, limit: int
    ) -> list[TemplateRow]:
        """Up to ``limit`` templates sealed under a data-key version below ``below``, in ``seq``
        order after ``after_seq``, quarantined rows left out (they open under no key)."""
        with self.tx() as db:
            rows = db.execute(
                "SELECT seq, id, tenant_id, subject_id, space_id, transform_version,"
                " sealed_vector, source, created_at FROM templates"
                " WHERE tenant_id=? AND (dek_version IS NULL OR dek_version<?) AND seq>?"
                " AND quarantined_at IS NULL ORDER BY seq LIMIT ?",
                (tenant_id, below, after_seq, limit),
            ).fetchall()
        return [
            TemplateRow(
                int(r["seq"]),
                r["id"],
                r["tenant_id"],
                r["subject_id"],
                r["space_id"],
                int(r["transform_version"]),
                bytes(r["sealed_vector"]),
                r["source"],
                float(r["created_at"]),
            )
            for r in rows
        ]

    def reseal_template(self, template_id: str, old: bytes, new: bytes, version: int) -> bool:
        """Swap a template's sealed bytes, only if they are still ``old`` (an erasure or a
        renewal meanwhile wins). The protected vector is the same, so no worker's in-memory
        index has anything to follow: the template log is not written."""
        with self.tx() as db:
            cur = db.execute(
                "UPDATE templates SET sealed_vector=?, dek_version=?"
                " WHERE id=? AND sealed_vector=?",
                (new, version, template_id, old),
            )
            return bool(cur.rowcount)

    def sessions_to_reseal(
        self, tenant_id: str, below: int, after_id: str, limit: int
    ) -> list[tuple[str, bytes]]:
        """(session id, sealed vector) of liveness sessions sealed under an older data key."""
        with self.tx() as db:
            rows = db.execute(
                "SELECT id, sealed_vector FROM liveness_sessions WHERE tenant_id=?"
                " AND sealed_vector IS NOT NULL AND (dek_version IS NULL OR dek_version<?)"
                " AND id>? ORDER BY id LIMIT ?",
                (tenant_id, below, after_id, limit),
            ).fetchall()
        return [(r["id"], bytes(r["sealed_vector"])) for r in rows]

    def reseal_session(
        self, tenant_id: str, session_id: str, old: bytes, new: bytes, version: int
    ) -> bool:
        with self.tx() as db:
            cur = db.execute(
                "UPDATE liveness_sessions SET sealed_vector=?, dek_version=?"
                " WHERE tenant_id=? AND id=? AND sealed_vector=?",
                (new, version, tenant_id, session_id, old),
            )
            return bool(cur.rowcount)

    def rows_below_data_key(self, tenant_id: str, below: int) -> dict[str, Any]:
        """How many rows are still sealed under an older data key (quarantined ones apart)."""
        with self.tx() as db:
            templates = db.execute(
                "SELECT COUNT(*) AS n FROM templates WHERE tenant_id=? AND quarantined_at IS NULL"
                " AND (dek_version IS NULL OR dek_version<?)",
                (tenant_id, below),
            ).fetchone()
            sessions = db.execute(
                "SELECT COUNT(*) AS n FROM liveness_sessions WHERE tenant_id=?"
                " AND sealed_vector IS NOT NULL AND (dek_version IS NULL OR dek_version<?)",
                (tenant_id, below),
            ).fetchone()
        return {"templates": int(templates["n"]), "sessions": int(sessions["n"])}
