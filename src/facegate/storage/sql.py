"""SQLStore: every query of the service, in SQL that SQLite and PostgreSQL both speak.

The backends (``sqlite.py``, ``postgres.py``) supply connections and migrations
(``connection.py``); the audit log's queries are in ``audit.py``, liveness sessions and lockout
counts in ``sessions.py``, tenants' data keys (current and retired) in ``tenant_keys.py``.
Only ciphertexts of (transformed) templates are stored; no image, no plain embedding. A crash
mid-request leaves no half-written enrolment: every multi-row change runs in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from facegate.errors import ConflictError
from facegate.storage.attempts import AttemptQueries
from facegate.storage.audit import AuditLog
from facegate.storage.base import (
    ApiKeyRow,
    ConsentRow,
    QuarantinedTemplate,
    SubjectRow,
    TemplateLogEntry,
    TemplateRow,
    TenantRow,
)
from facegate.storage.idempotency import IdempotencyQueries
from facegate.storage.sessions import SessionQueries
from facegate.storage.tenant_keys import TenantKeyQueries
from facegate.storage.webhooks import WebhookQueries

TENANT_SELECT = (
    "SELECT t.*, COALESCE(v.dek_version, 1) AS dek_version FROM tenants t"
    " LEFT JOIN tenant_dek_versions v ON v.tenant_id = t.id"
)


class SQLStore(
    AuditLog,
    SessionQueries,
    AttemptQueries,
    IdempotencyQueries,
    TenantKeyQueries,
    WebhookQueries,
):
    """Every query of the service, in SQL that SQLite and PostgreSQL both speak."""

    stores_protected_vectors = False  # True where the database itself indexes (pgvector)

    # -- tenants and keys -------------------------------------------------------------------
    # (a tenant's data-key version is read with its wrapped key, in one statement: whoever opens
    # the keys knows which version they are; none listed: the tenant's first key)

    def add_tenant(self, row: TenantRow) -> None:
        with self.tx() as db:
            try:
                db.execute(
                    "INSERT INTO tenants (id, name, created_at, kek_version, wrapped_dek,"
                    " sealed_transform_seed, transform_version, settings)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        row.id,
                        row.name,
                        row.created_at,
                        row.kek_version,
                        row.wrapped_dek,
                        row.sealed_transform_seed,
                        row.transform_version,
                        json.dumps(row.settings),
                    ),
                )
            except self.integrity_errors as exc:
                raise ConflictError("a tenant with that name exists", code="tenant_exists") from exc

    def _tenant(self, r: Any) -> TenantRow | None:
        if r is None:
            return None
        return TenantRow(
            r["id"],
            r["name"],
            r["created_at"],
            r["kek_version"],
            r["wrapped_dek"],
            r["sealed_transform_seed"],
            r["transform_version"],
            json.loads(r["settings"]),
            int(r["dek_version"]),
        )

    def get_tenant(self, tenant_id: str) -> TenantRow | None:
        return self._tenant(
            self._db().execute(TENANT_SELECT + " WHERE t.id=?", (tenant_id,)).fetchone()
        )

    def tenant_by_name(self, name: str) -> TenantRow | None:
        return self._tenant(
            self._db().execute(TENANT_SELECT + " WHERE t.name=?", (name,)).fetchone()
        )

    def list_tenants(self) -> list[TenantRow]:
        return [t for t in map(self._tenant, self._db().execute(TENANT_SELECT)) if t]

    def update_tenant_settings(self, tenant_id: str, settings: dict[str, Any]) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE tenants SET settings=? WHERE id=?", (json.dumps(settings), tenant_id)
            )

    def add_api_key(self, tenant_id: str, roles: frozenset[str], label: str, now: float) -> str:
        """Create a key; returns the secret once (``fg_<id>_<secret>``); only its hash is kept."""
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        with self.tx() as db:
            db.execute(
                "INSERT INTO api_keys (id, tenant_id, secret_hash, roles, label, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, tenant_id, hash_secret(secret), ",".join(sorted(roles)), label, now),
            )
        return f"fg_{key_id}_{secret}"

    def get_api_key(self, key_id: str) -> ApiKeyRow | None:
        r = self._db().execute("SELECT * FROM api_keys WHERE id=?", (key_id,)).fetchone()
        if r is None:
            return None
        return ApiKeyRow(
            r["id"],
            r["tenant_id"],
            r["secret_hash"],
            frozenset(x for x in r["roles"].split(",") if x),
            r["label"],
            r["revoked_at"] is not None,
        )

    def revoke_api_key(self, tenant_id: str, key_id: str, now: float) -> bool:
        with self.tx() as db:
            cur = db.execute(
                "UPDATE api_keys SET revoked_at=?"
                " WHERE id=? AND tenant_id=? AND revoked_at IS NULL",
                (now, key_id, tenant_id),
            )
            return cur.rowcount == 1

    # -- subjects and consents --------------------------------------------------------------

    def add_subject(
        self, tenant_id: str, subject_id: str, external_ref: str | None, now: float
    ) -> None:
        with self.tx() as db:
            try:
                db.execute(
                    "INSERT INTO subjects VALUES (?, ?, ?, ?, ?, NULL)",
                    (tenant_id, subject_id, external_ref, now, now),
                )
            except self.integrity_errors as exc:
                raise ConflictError("that subject id exists", code="subject_exists") from exc

    def get_subject(self, tenant_id: str, subject_id: str) -> SubjectRow | None:
        r = (
            self._db()
            .execute("SELECT * FROM subjects WHERE tenant_id=? AND id=?", (tenant_id, subject_id))
            .fetchone()
        )
        return SubjectRow(**dict(r)) if r else None

    def touch_subject(self, tenant_id: str, subject_id: str, now: float) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE subjects SET last_activity_at=? WHERE tenant_id=? AND id=?",
                (now, tenant_id, subject_id),
            )

    def mark_subject_erased(self, tenant_id: str, subject_id: str, now: float) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE subjects SET erased_at=?, external_ref=NULL WHERE tenant_id=? AND id=?",
                (now, tenant_id, subject_id),
            )

    def add_consent(
        self,
        tenant_id: str,
        subject_id: str,
        purpose: str,
        text_version: str,
        method: str,
        now: float,
    ) -> str:
        consent_id = secrets.token_hex(12)
        with self.tx() as db:
            db.execute(
                "INSERT INTO consents VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (consent_id, tenant_id, subject_id, purpose, text_version, method, now),
            )
        return consent_id

    def consents(self, tenant_id: str, subject_id: str) -> list[ConsentRow]:
        rows = self._db().execute(
            "SELECT * FROM consents WHERE tenant_id=? AND subject_id=? ORDER BY granted_at",
            (tenant_id, subject_id),
        )
        return [ConsentRow(**dict(r)) for r in rows]

    def active_consent(self, tenant_id: str, subject_id: str, purpose: str) -> ConsentRow | None:
        r = (
            self._db()
            .execute(
                "SELECT * FROM consents WHERE tenant_id=? AND subject_id=? AND purpose=?"
                " AND withdrawn_at IS NULL ORDER BY granted_at DESC LIMIT 1",
                (tenant_id, subject_id, purpose),
            )
            .fetchone()
        )
        return ConsentRow(**dict(r)) if r else None

    def withdraw_consents(
        self, tenant_id: str, subject_id: str, now: float, consent_id: str | None = None
    ) -> int:
        with self.tx() as db:
            if consent_id:
                cur = db.execute(
                    "UPDATE consents SET withdrawn_at=? WHERE tenant_id=? AND subject_id=?"
                    " AND id=? AND withdrawn_at IS NULL",
                    (now, tenant_id, subject_id, consent_id),
                )
            else:
                cur = db.execute(
                    "UPDATE consents SET withdrawn_at=? WHERE tenant_id=? AND subject_id=?"
                    " AND withdrawn_at IS NULL",
                    (now, tenant_id, subject_id),
                )
            return cur.rowcount

    # -- templates --------------------------------------------------------------------------

    def add_template(self, row: TemplateRow) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO templates (id, tenant_id, subject_id, space_id, transform_version,"
                " sealed_vector, source, created_at, dek_version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.tenant_id,
                    row.subject_id,
                    row.space_id,
                    row.transform_version,
                    row.sealed_vector,
                    row.source,
                    row.created_at,
                    row.dek_version,  # the key that sealed it, as the sealing code says
                ),
            )
            self._lock_log(db)
            db.execute(
                "INSERT INTO template_log (tenant_id, template_id, op) VALUES (?, ?, 'add')",
                (row.tenant_id, row.id),
            )

    def _template(self, r: Any) -> TemplateRow:
        return TemplateRow(
            r["seq"],
            r["id"],
            r["tenant_id"],
            r["subject_id"],
            r["space_id"],
            r["transform_version"],
            r["sealed_vector"],
            r["source"],
            r["created_at"],
            r["dek_version"],
        )

    def templates_of(self, tenant_id: str, subject_id: str) -> list[TemplateRow]:
        rows = self._db().execute(
            "SELECT * FROM templates WHERE tenant_id=? AND subject_id=?"
            " AND quarantined_at IS NULL ORDER BY seq",
            (tenant_id, subject_id),
        )
        return [self._template(r) for r in rows]

    def all_templates(self, tenant_id: str | None = None) -> list[TemplateRow]:
        if tenant_id is None:
            rows = self._db().execute(
                "SELECT * FROM templates WHERE quarantined_at IS NULL ORDER BY seq"
            )
        else:
            rows = self._db().execute(
                "SELECT * FROM templates WHERE tenant_id=? AND quarantined_at IS NULL ORDER BY seq",
                (tenant_id,),
            )
        return [self._template(r) for r in rows]

    def get_template(self, template_id: str) -> TemplateRow | None:
        r = (
            self._db()
            .execute(
                "SELECT * FROM templates WHERE id=? AND quarantined_at IS NULL", (template_id,)
            )
            .fetchone()
        )
        return self._template(r) if r else None

    def quarantine_template(self, template_id: str, now: float) -> bool:
        """Take a template that no longer opens out of use (and out of every index, through the
        log). True for the one caller that quarantined it."""
        with self.tx() as db:
            r = db.execute(
                "SELECT tenant_id FROM templates WHERE id=? AND quarantined_at IS NULL",
                (template_id,),
            ).fetchone()
            if r is None:
                return False
            db.execute("UPDATE templates SET quarantined_at=? WHERE id=?", (now, template_id))
            self._lock_log(db)
            db.execute(
                "INSERT INTO template_log (tenant_id, template_id, op) VALUES (?, ?, 'remove')",
                (r["tenant_id"], template_id),
            )
            return True

    def quarantined_templates(self, tenant_id: str | None = None) -> list[QuarantinedTemplate]:
        sql = "SELECT tenant_id, subject_id, id, quarantined_at FROM templates"
        sql += " WHERE quarantined_at IS NOT NULL" + (" AND tenant_id=?" if tenant_id else "")
        rows = self._db().execute(
            sql + " ORDER BY quarantined_at", (tenant_id,) if tenant_id else ()
        )
        return [
            QuarantinedTemplate(r["tenant_id"], r["subject_id"], r["id"], r["quarantined_at"])
            for r in rows
        ]

    def delete_templates(
        self, tenant_id: str, subject_id: str, template_id: str | None = None
    ) -> list[str]:
        with self.tx() as db:
            if template_id:
                rows = db.execute(
                    "SELECT id FROM templates WHERE tenant_id=? AND subject_id=? AND id=?",
                    (tenant_id, subject_id, template_id),
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT id FROM templates WHERE tenant_id=? AND subject_id=?",
                    (tenant_id, subject_id),
                ).fetchall()
            ids = [r["id"] for r in rows]
            if ids:
                self._lock_log(db)
            for tid in ids:
                db.execute("DELETE FROM templates WHERE id=?", (tid,))
                db.execute(
                    "INSERT INTO template_log (tenant_id, template_id, op) VALUES (?, ?, 'remove')",
                    (tenant_id, tid),
                )
            return ids

    def replace_template_vector(
        self, template_id: str, sealed_vector: bytes, transform_version: int, dek_version: int
    ) -> None:
        """A new sealed vector (a renewed transform): the log records it as a removal and an
        addition, so every worker's in-memory index swaps the vector without a restart."""
        with self.tx() as db:
            r = db.execute("SELECT tenant_id FROM templates WHERE id=?", (template_id,)).fetchone()
            db.execute(
                "UPDATE templates SET sealed_vector=?, transform_version=?, dek_version=?"
                " WHERE id=?",
                (sealed_vector, transform_version, dek_version, template_id),
            )
            if r is not None:
                self._lock_log(db)
                for op in ("remove", "add"):
                    db.execute(
                        "INSERT INTO template_log (tenant_id, template_id, op) VALUES (?, ?, ?)",
                        (r["tenant_id"], template_id, op),
                    )

    def template_log_since(self, seq: int) -> list[TemplateLogEntry]:
        rows = self._db().execute(
            "SELECT seq, tenant_id, template_id, op FROM template_log WHERE seq>? ORDER BY seq",
            (seq,),
        )
        return [TemplateLogEntry(r["seq"], r["tenant_id"], r["template_id"], r["op"]) for r in rows]

    def last_log_seq(self) -> int:
        return int(
            self._db()
            .execute("SELECT COALESCE(MAX(seq), 0) AS n FROM template_log")
            .fetchone()["n"]
        )

    def expired_subjects(self, tenant_id: str, before: float) -> list[str]:
        rows = self._db().execute(
            "SELECT DISTINCT s.id AS id FROM subjects s JOIN templates t"
            " ON t.tenant_id=s.tenant_id AND t.subject_id=s.id"
            " WHERE s.tenant_id=? AND s.last_activity_at < ?",
            (tenant_id, before),
        )
        return [r["id"] for r in rows]


def hash_secret(secret: str) -> str:
    """API key secrets are 256-bit random, so one SHA-256 is enough (no password stretching)."""
    return hashlib.sha256(b"facegate-api-key|" + secret.encode()).hexdigest()
