"""PostgresStore: PostgreSQL, selected by ``FACEGATE_DATABASE_URL``.

Same queries as SQLite (``SQLStore``). By default the database holds templates only sealed
(AES-GCM), and the 1:N index is built in each worker's memory from them, as with SQLite.

``unsealed_index=True`` (the service's explicit opt-in ``FACEGATE_INDEX=pgvector-unsealed``) also
keeps each template's *transformed* vector in clear in the pgvector column ``protected``, with an
HNSW index per embedding space, so that workers share one database-side index. What that costs:
the transform is linear, so whoever dumps the database and knows the plain embeddings of a few
dozen enrolled faces (their own, enrolled on purpose) recovers it by orthogonal Procrustes and can
search every face (``bench/bench_procrustes.py``). Opened without the opt-in, an existing column is
cleared and its HNSW indexes dropped (the sealed templates are the source of truth).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row

from facegate.errors import ConfigError
from facegate.storage.connection import Connection
from facegate.storage.migrations import POSTGRES
from facegate.storage.sql import SQLStore

_SPACE = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")
AUDIT_LOCK = 7_355_608


def vector_literal(v: np.ndarray) -> str:
    return "[" + ",".join(f"{float(x):.8g}" for x in v) + "]"


class PostgresStore(SQLStore):
    placeholder = "%s"
    integrity_errors = (psycopg.errors.IntegrityError,)
    connection_errors = (psycopg.OperationalError, psycopg.InterfaceError)
    stores_protected_vectors = True

    def __init__(self, url: str, ef_search: int = 200, *, unsealed_index: bool = False) -> None:
        """``unsealed_index``: keep transformed vectors in clear for the pgvector index (the
        opt-in ``FACEGATE_INDEX=pgvector-unsealed``, used with ``DatabaseIndex``). Off, the
        default, the column is emptied and nothing template-derived is stored outside the
        envelope."""
        super().__init__()
        self.url = url
        self.ef_search = ef_search
        self.stores_protected_vectors = unsealed_index
        self._indexed_spaces: set[str] = set()
        self.migrate()
        if not unsealed_index:
            self.clear_unsealed_vectors()

    def clear_unsealed_vectors(self) -> int:
        """Drop the pgvector HNSW indexes and empty the ``protected`` column (a database that
        once ran with the opt-in). Returns the number of rows cleared."""
        with self.tx() as db:
            names = db.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'templates'"
                " AND indexname LIKE ?",
                ("templates_hnsw_%",),
            ).fetchall()
            for r in names:
                db.raw.execute(f'DROP INDEX IF EXISTS "{r["indexname"]}"')
            cur = db.execute("UPDATE templates SET protected = NULL WHERE protected IS NOT NULL")
            cleared = int(cur.rowcount or 0)
        if cleared:
            # dead tuples still hold the vectors until vacuumed
            self._db().raw.execute("VACUUM templates")
        return cleared

    def purge_deleted(self) -> None:
        """Nothing immediate: deleted rows stay in dead tuples until (auto)vacuum and in the WAL
        and base backups; the README states this limit of erasure on PostgreSQL."""

    def _connect(self) -> Any:
        return psycopg.connect(self.url, autocommit=True, row_factory=dict_row)

    def _begin(self, db: Connection) -> None:
        db.execute("BEGIN")

    def migrate(self) -> None:
        with self.tx() as db:
            db.execute("SELECT pg_advisory_xact_lock(1)")
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT MAX(version) AS v FROM schema_version").fetchone()
            version = row["v"] or 0
            for number, script in enumerate(POSTGRES[version:], start=version + 1):
                db.raw.execute(script)
                db.execute("INSERT INTO schema_version VALUES (?)", (number,))

    def lock_tenant(self, tenant_id: str) -> None:
        self._db().execute("SELECT pg_advisory_xact_lock(hashtext(?))", (tenant_id,))

    def lock_subject(self, db: Connection, tenant_id: str, subject_id: str) -> None:
        """Attempt decisions for one subject run one at a time across workers and machines."""
        db.execute(
            "SELECT pg_advisory_xact_lock(hashtext(?))",
            ("attempts|" + tenant_id + "|" + subject_id,),
        )

    def _lock_audit(self, db: Connection) -> None:
        db.execute("SELECT pg_advisory_xact_lock(?)", (AUDIT_LOCK,))

    def _lock_log(self, db: Connection) -> None:
        # A BIGSERIAL is handed out at insert, not at commit: without a lock held to the commit,
        # a transaction with a later seq can commit first, a worker reading the log in between
        # moves past the earlier seq and never applies it (seen: a transform renewal's entries
        # skipped while enrolments committed, so one worker missed a duplicate). The audit's
        # lock, not another: every transaction writing the log also appends to the audit, so one
        # lock adds no lock-order cycle.
        self._lock_audit(db)

    # -- the pgvector index ---------------------------------------------------------------------

    def set_protected_vector(self, template_id: str, vector: np.ndarray) -> None:
        if not self.stores_protected_vectors:
            raise ConfigError(
                "this database keeps no unsealed vectors (FACEGATE_INDEX=pgvector-unsealed is off)",
                code="unsealed_index_off",
            )
        with self.tx() as db:
            db.execute(
                "UPDATE templates SET protected = ?::vector WHERE id = ?",
                (vector_literal(vector), template_id),
            )

    def _ensure_space_index(self, space_id: str, dim: int) -> None:
        if not _SPACE.match(space_id):
            raise ValueError("bad space id")
        if space_id in self._indexed_spaces:
            return
        name = "templates_hnsw_" + re.sub(r"[^a-z0-9]", "_", space_id.lower())[:40]
        self._db().raw.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON templates USING hnsw "
            f"((protected::vector({dim})) vector_ip_ops) WHERE space_id = '{space_id}'"
        )
        self._indexed_spaces.add(space_id)

    def search_protected(
        self, tenant_id: str, space_id: str, vector: np.ndarray, k: int
    ) -> list[tuple[str, str, float]]:
        """(subject, template, score) by inner product. The HNSW index filters by tenant after
        the graph search; when that leaves fewer than ``k`` rows, the tenant is scanned exactly."""
        if not self.stores_protected_vectors:
            raise ConfigError("this database keeps no unsealed vectors", code="unsealed_index_off")
        dim = len(vector)
        self._ensure_space_index(space_id, dim)
        q = vector_literal(vector)
        # The space id is written into the query (it is checked against a strict pattern), not
        # passed as a parameter: only then can the planner match the partial HNSW index.
        sql = (
            f"SELECT subject_id, id, -(protected::vector({dim}) <#> ?::vector({dim})) AS score"
            f" FROM templates WHERE space_id = '{space_id}' AND tenant_id = ?"
            f" AND protected IS NOT NULL"
            f" ORDER BY protected::vector({dim}) <#> ?::vector({dim}) LIMIT ?"
        )
        args = (q, tenant_id, q, k)
        with self.tx() as db:
            db.execute(f"SET LOCAL hnsw.ef_search = {int(self.ef_search)}")
            rows = db.execute(sql, args).fetchall()
            if len(rows) < k:
                db.execute("SET LOCAL enable_indexscan = off")
                rows = db.execute(sql, args).fetchall()
        return [(r["subject_id"], r["id"], float(r["score"])) for r in rows]

    def count_protected(self, tenant_id: str, space_id: str) -> int:
        row = (
            self._db()
            .execute(
                "SELECT COUNT(*) AS n FROM templates WHERE tenant_id = ? AND space_id = ?",
                (tenant_id, space_id),
            )
            .fetchone()
        )
        return int(row["n"])
