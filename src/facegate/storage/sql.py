"""SQLStore: every query of the service, in SQL that SQLite and PostgreSQL both speak.

A backend (``sqlite.py``, ``postgres.py``) supplies the connection, the transaction start, its
migrations and its integrity-error type; queries are written with ``?`` placeholders.
Only ciphertexts of (transformed) templates are stored; no image, no plain embedding. A crash
mid-request leaves no half-written enrolment: every multi-row change runs in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from facegate.errors import FacegateError

GENESIS_HASH = "0" * 64


class StoreError(FacegateError):
    default_code = "store_error"


@dataclass(frozen=True)
class TenantRow:
    id: str
    name: str
    created_at: float
    kek_version: int
    wrapped_dek: bytes
    sealed_transform_seed: bytes
    transform_version: int
    settings: dict[str, Any]


@dataclass(frozen=True)
class ApiKeyRow:
    id: str
    tenant_id: str
    secret_hash: str
    roles: frozenset[str]
    label: str
    revoked: bool


@dataclass(frozen=True)
class TemplateRow:
    seq: int
    id: str
    tenant_id: str
    subject_id: str
    space_id: str
    transform_version: int
    sealed_vector: bytes
    source: str
    created_at: float


def audit_hash(prev_hash: str, record: dict[str, Any]) -> str:
    body = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev_hash + "|" + body).encode()).hexdigest()


class _Conn:
    """A DB-API connection that takes ``?`` placeholders whatever the driver wants."""

    def __init__(self, raw: Any, placeholder: str) -> None:
        self.raw = raw
        self.placeholder = placeholder

    def execute(self, sql: str, args: Any = ()) -> Any:
        if self.placeholder != "?":
            sql = sql.replace("?", self.placeholder)
        return self.raw.execute(sql, args)


class SQLStore:
    """Shared queries. Subclasses set ``placeholder`` and ``integrity_errors`` and implement
    ``_connect``, ``_begin`` and ``migrate``."""

    placeholder = "?"
    integrity_errors: tuple[type[Exception], ...] = ()
    stores_protected_vectors = False  # True where the database itself indexes (pgvector)

    def __init__(self) -> None:
        self._local = threading.local()

    # -- connections and transactions ---------------------------------------------------------

    def _connect(self) -> Any:
        raise NotImplementedError

    def _begin(self, db: _Conn) -> None:
        raise NotImplementedError

    def migrate(self) -> None:
        raise NotImplementedError

    def lock_tenant(self, tenant_id: str) -> None:
        """Serialise enrolments of one tenant across workers (inside ``tx``)."""

    def _lock_audit(self, db: _Conn) -> None:
        """Serialise audit appends across workers (inside ``tx``)."""

    def _db(self) -> _Conn:
        db = getattr(self._local, "db", None)
        if db is None:
            db = _Conn(self._connect(), self.placeholder)
            self._local.db = db
            self._local.depth = 0
        return db

    @contextmanager
    def tx(self) -> Iterator[_Conn]:
        """One write transaction (nested calls join the outer one)."""
        db = self._db()
        if self._local.depth:
            self._local.depth += 1
            try:
                yield db
            finally:
                self._local.depth -= 1
            return
        self._begin(db)
        self._local.depth = 1
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")
        finally:
            self._local.depth = 0

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.raw.close()
            self._local.db = None

    # -- tenants and keys -------------------------------------------------------------------

    def add_tenant(self, row: TenantRow) -> None:
        with self.tx() as db:
            try:
                db.execute(
                    "INSERT INTO tenants VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
                raise StoreError("a tenant with that name exists", code="tenant_exists") from exc

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
        )

    def get_tenant(self, tenant_id: str) -> TenantRow | None:
        return self._tenant(
            self._db().execute("SELECT * FROM tenants WHERE id=?", (tenant_id,)).fetchone()
        )

    def tenant_by_name(self, name: str) -> TenantRow | None:
        return self._tenant(
            self._db().execute("SELECT * FROM tenants WHERE name=?", (name,)).fetchone()
        )

    def list_tenants(self) -> list[TenantRow]:
        return [t for t in map(self._tenant, self._db().execute("SELECT * FROM tenants")) if t]

    def update_tenant_settings(self, tenant_id: str, settings: dict[str, Any]) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE tenants SET settings=? WHERE id=?", (json.dumps(settings), tenant_id)
            )

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
                raise StoreError("that subject id exists", code="subject_exists") from exc

    def get_subject(self, tenant_id: str, subject_id: str) -> dict[str, Any] | None:
        r = (
            self._db()
            .execute("SELECT * FROM subjects WHERE tenant_id=? AND id=?", (tenant_id, subject_id))
            .fetchone()
        )
        return dict(r) if r else None

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

    def consents(self, tenant_id: str, subject_id: str) -> list[dict[str, Any]]:
        rows = self._db().execute(
            "SELECT * FROM consents WHERE tenant_id=? AND subject_id=? ORDER BY granted_at",
            (tenant_id, subject_id),
        )
        return [dict(r) for r in rows]

    def active_consent(
        self, tenant_id: str, subject_id: str, purpose: str
    ) -> dict[str, Any] | None:
        r = (
            self._db()
            .execute(
                "SELECT * FROM consents WHERE tenant_id=? AND subject_id=? AND purpose=?"
                " AND withdrawn_at IS NULL ORDER BY granted_at DESC LIMIT 1",
                (tenant_id, subject_id, purpose),
            )
            .fetchone()
        )
        return dict(r) if r else None

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
                " sealed_vector, source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.tenant_id,
                    row.subject_id,
                    row.space_id,
                    row.transform_version,
                    row.sealed_vector,
                    row.source,
                    row.created_at,
                ),
            )
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
        )

    def templates_of(self, tenant_id: str, subject_id: str) -> list[TemplateRow]:
        rows = self._db().execute(
            "SELECT * FROM templates WHERE tenant_id=? AND subject_id=? ORDER BY seq",
            (tenant_id, subject_id),
        )
        return [self._template(r) for r in rows]

    def all_templates(self, tenant_id: str | None = None) -> list[TemplateRow]:
        if tenant_id is None:
            rows = self._db().execute("SELECT * FROM templates ORDER BY seq")
        else:
            rows = self._db().execute(
                "SELECT * FROM templates WHERE tenant_id=? ORDER BY seq", (tenant_id,)
            )
        return [self._template(r) for r in rows]

    def get_template(self, template_id: str) -> TemplateRow | None:
        r = self._db().execute("SELECT * FROM templates WHERE id=?", (template_id,)).fetchone()
        return self._template(r) if r else None

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
            for tid in ids:
                db.execute("DELETE FROM templates WHERE id=?", (tid,))
                db.execute(
                    "INSERT INTO template_log (tenant_id, template_id, op) VALUES (?, ?, 'remove')",
                    (tenant_id, tid),
                )
            return ids

    def replace_template_vector(
        self, template_id: str, sealed_vector: bytes, transform_version: int
    ) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE templates SET sealed_vector=?, transform_version=? WHERE id=?",
                (sealed_vector, transform_version, template_id),
            )

    def template_log_since(self, seq: int) -> list[tuple[int, str, str, str]]:
        rows = self._db().execute(
            "SELECT seq, tenant_id, template_id, op FROM template_log WHERE seq>? ORDER BY seq",
            (seq,),
        )
        return [(r["seq"], r["tenant_id"], r["template_id"], r["op"]) for r in rows]

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

    # -- liveness ---------------------------------------------------------------------------

    def spend_challenge(
        self, tenant_id: str, challenge_id: str, expires_at: float, now: float
    ) -> bool:
        """True when spent now; False when it had been spent before."""
        with self.tx() as db:
            db.execute("DELETE FROM spent_challenges WHERE expires_at < ?", (now - 3600,))
            try:
                db.execute(
                    "INSERT INTO spent_challenges VALUES (?, ?, ?)",
                    (tenant_id, challenge_id, expires_at),
                )
            except self.integrity_errors:
                return False
            return True

    def add_liveness_session(
        self,
        tenant_id: str,
        session_id: str,
        live: bool,
        space_id: str | None,
        sealed_vector: bytes | None,
        summary: dict[str, Any],
        expires_at: float,
    ) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM liveness_sessions WHERE expires_at < ?", (expires_at - 7200,))
            db.execute(
                "INSERT INTO liveness_sessions VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    tenant_id,
                    session_id,
                    int(live),
                    space_id,
                    sealed_vector,
                    json.dumps(summary),
                    expires_at,
                ),
            )

    def take_liveness_session(
        self, tenant_id: str, session_id: str, now: float
    ) -> dict[str, Any] | None:
        """Single use: returns the session once, and only before it expires."""
        with self.tx() as db:
            r = db.execute(
                "SELECT * FROM liveness_sessions WHERE tenant_id=? AND id=?",
                (tenant_id, session_id),
            ).fetchone()
            if r is None or r["used_at"] is not None or r["expires_at"] < now:
                return None
            db.execute(
                "UPDATE liveness_sessions SET used_at=?, sealed_vector=NULL"
                " WHERE tenant_id=? AND id=?",
                (now, tenant_id, session_id),
            )
            out = dict(r)
            out["summary"] = json.loads(out["summary"])
            return out

    # -- lockout ----------------------------------------------------------------------------

    def add_verify_failure(self, tenant_id: str, subject_id: str, now: float) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO verify_failures VALUES (?, ?, ?)", (tenant_id, subject_id, now))

    def verify_failures_since(self, tenant_id: str, subject_id: str, since: float) -> list[float]:
        rows = self._db().execute(
            "SELECT at FROM verify_failures"
            " WHERE tenant_id=? AND subject_id=? AND at>=? ORDER BY at",
            (tenant_id, subject_id, since),
        )
        return [r["at"] for r in rows]

    # -- audit ------------------------------------------------------------------------------

    def append_audit(
        self,
        *,
        at: float,
        tenant_id: str | None,
        actor: str,
        action: str,
        subject_id: str | None,
        outcome: str,
        details: dict[str, Any],
    ) -> None:
        with self.tx() as db:
            self._lock_audit(db)
            last = db.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            prev = last["hash"] if last else GENESIS_HASH
            seq = int(
                db.execute("SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM audit").fetchone()["n"]
            )
            record = {
                "seq": seq,
                "at": at,
                "tenant_id": tenant_id,
                "actor": actor,
                "action": action,
                "subject_id": subject_id,
                "outcome": outcome,
                "details": details,
            }
            db.execute(
                "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    at,
                    tenant_id,
                    actor,
                    action,
                    subject_id,
                    outcome,
                    json.dumps(details, sort_keys=True),
                    prev,
                    audit_hash(prev, record),
                ),
            )

    def audit_records(
        self, tenant_id: str | None = None, subject_id: str | None = None
    ) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM audit", []
        clauses = []
        if tenant_id is not None:
            clauses.append("tenant_id=?")
            args.append(tenant_id)
        if subject_id is not None:
            clauses.append("subject_id=?")
            args.append(subject_id)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        rows = self._db().execute(sql + " ORDER BY seq", args)
        out = []
        for r in rows:
            d = dict(r)
            d["details"] = json.loads(d["details"])
            out.append(d)
        return out


def hash_secret(secret: str) -> str:
    """API key secrets are 256-bit random, so one SHA-256 is enough (no password stretching)."""
    return hashlib.sha256(b"facegate-api-key|" + secret.encode()).hexdigest()


def verify_audit_chain(records: list[dict[str, Any]]) -> tuple[bool, list[dict[str, Any]]]:
    """Recompute the chain; returns (ok, problems). Finds altered, removed and reordered records."""
    problems = []
    prev = GENESIS_HASH
    expected_seq = 1
    for r in records:
        if r["seq"] != expected_seq:
            problems.append(
                {
                    "seq": r["seq"],
                    "problem": f"expected record {expected_seq} here (removed or reordered)",
                }
            )
        if r["prev_hash"] != prev:
            problems.append({"seq": r["seq"], "problem": "does not follow the previous record"})
        record = {
            k: r[k]
            for k in (
                "seq",
                "at",
                "tenant_id",
                "actor",
                "action",
                "subject_id",
                "outcome",
                "details",
            )
        }
        if audit_hash(r["prev_hash"], record) != r["hash"]:
            problems.append({"seq": r["seq"], "problem": "content altered"})
        prev = r["hash"]
        expected_seq = r["seq"] + 1
    return not problems, problems
