"""A tenant's keys: its wrapped data key and sealed transform seed, and its retired data keys.
A renewal (``facegate keys renew-transform``) or a data-key rotation (``facegate keys
rotate-data-key``) gives a tenant a fresh data key and re-seals everything current under it; the
old key is kept here (by its data-key version), wrapped by the master key like the current one,
only so that the tenant's export can still open audit details sealed before. Nothing else is
ever opened with a retired key.

``tenant_dek_versions`` says which data-key version a tenant's current key is (changed in the
transaction that installs the key, read with the tenant's row in one statement), and every
template, liveness session and webhook endpoint says which version sealed it (``dek_version``,
migration 10), written by the code that sealed it from the keys it sealed with
(``TenantSecrets.dek_version``), never guessed from the tenant's version at insert time: a row
sealed with keys read before a rotation's switch and written after it is marked old, and
re-sealed. A rotation re-seals the rows below the new version in batches, so a rerun after a
crash continues where it stopped."""

from __future__ import annotations

from typing import NamedTuple

from facegate.storage.connection import SQLBase


class RetiredKey(NamedTuple):
    tenant_id: str
    version: int  # its data-key version (before migration 10: the transform version it served)
    kek_version: int
    wrapped_dek: bytes


class SealedRow(NamedTuple):
    """One row sealed under a tenant's data key, as a rotation re-seals it."""

    id: str  # the template's or session's id; the tenant's id for its webhook endpoint
    sealed: bytes
    subject_id: str | None  # with space_id: what a template's associated data names
    space_id: str | None


# What a rotation re-seals, by kind: (table, key column, sealed column, the rows that count)
SEALED_KINDS: dict[str, tuple[str, str, str, str]] = {
    "templates": ("templates", "id", "sealed_vector", "quarantined_at IS NULL"),
    "sessions": ("liveness_sessions", "id", "sealed_vector", "sealed_vector IS NOT NULL"),
    "webhook": ("webhooks", "tenant_id", "sealed_config", "sealed_config IS NOT NULL"),
}


def _kind(kind: str) -> tuple[str, str, str, str]:
    if kind not in SEALED_KINDS:  # the SQL below is built from these names only
        raise ValueError(f"unknown sealed kind {kind!r}")
    return SEALED_KINDS[kind]


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

    def set_data_key_version(self, tenant_id: str, version: int) -> None:
        """Inside the transaction that installs the key (``update_tenant_keys``): whoever reads
        the tenant's row reads the key and its version together."""
        with self.tx() as db:
            db.execute(
                "INSERT INTO tenant_dek_versions (tenant_id, dek_version) VALUES (?, ?)"
                " ON CONFLICT (tenant_id) DO UPDATE SET dek_version=excluded.dek_version",
                (tenant_id, version),
            )

    def rows_to_reseal(
        self, kind: str, tenant_id: str, below: int, after_id: str, limit: int
    ) -> list[SealedRow]:
        """Up to ``limit`` rows of one kind sealed under a data-key version below ``below`` (or
        an unknown one), in id order after ``after_id``; quarantined templates left out (they
        open under no key)."""
        table, key, blob, where = _kind(kind)
        names = (
            "subject_id, space_id" if kind != "webhook" else "NULL AS subject_id, NULL AS space_id"
        )
        with self.tx() as db:
            rows = db.execute(
                f"SELECT {key} AS id, {blob} AS sealed, {names} FROM {table}"
                f" WHERE tenant_id=? AND {where} AND (dek_version IS NULL OR dek_version<?)"
                f" AND {key}>? ORDER BY {key} LIMIT ?",
                (tenant_id, below, after_id, limit),
            ).fetchall()
        return [
            SealedRow(r["id"], bytes(r["sealed"]), r["subject_id"], r["space_id"]) for r in rows
        ]

    def reseal_row(
        self, kind: str, tenant_id: str, row_id: str, old: bytes, new: bytes, version: int
    ) -> bool:
        """Swap a row's sealed bytes, only if they are still ``old`` (an erasure, a renewal or
        a change meanwhile wins). A template's protected vector is the same, so no worker's
        in-memory index has anything to follow: the template log is not written."""
        table, key, blob, _ = _kind(kind)
        with self.tx() as db:
            cur = db.execute(
                f"UPDATE {table} SET {blob}=?, dek_version=?"
                f" WHERE tenant_id=? AND {key}=? AND {blob}=?",
                (new, version, tenant_id, row_id, old),
            )
            return bool(cur.rowcount)

    def delete_sealed_row(self, kind: str, tenant_id: str, row_id: str, old: bytes) -> bool:
        """Remove a row that opens under no key the tenant holds (only if still ``old``)."""
        table, key, blob, _ = _kind(kind)
        with self.tx() as db:
            cur = db.execute(
                f"DELETE FROM {table} WHERE tenant_id=? AND {key}=? AND {blob}=?",
                (tenant_id, row_id, old),
            )
            return bool(cur.rowcount)

    def rows_below_data_key(self, tenant_id: str, below: int) -> dict[str, int]:
        """How many rows of each kind are still sealed under an older (or unknown) data key,
        quarantined templates apart."""
        out: dict[str, int] = {}
        with self.tx() as db:
            for kind, (table, _, _, where) in SEALED_KINDS.items():
                r = db.execute(
                    f"SELECT COUNT(*) AS n FROM {table} WHERE tenant_id=? AND {where}"
                    " AND (dek_version IS NULL OR dek_version<?)",
                    (tenant_id, below),
                ).fetchone()
                out[kind] = int(r["n"])
        return out
