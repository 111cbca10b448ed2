"""PostgresStore: PostgreSQL with pgvector, selected by ``FACEGATE_DATABASE_URL``.

Same queries as SQLite (``SQLStore``); in addition each template row keeps its *transformed*
vector in a pgvector column with an HNSW index per embedding space, so several API workers and
machines share one 1:N index. Transformed vectors match nothing outside their tenant (see the
breach test); the sealed copy stays the source of truth.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row

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
    stores_protected_vectors = True

    def __init__(self, url: str, ef_search: int = 200) -> None:
        super().__init__()
        self.url = url
        self.ef_search = ef_search
        self._indexed_spaces: set[str] = set()
        self.migrate()

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

    # -- the pgvector index ---------------------------------------------------------------------

    def set_protected_vector(self, template_id: str, vector: np.ndarray) -> None:
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
