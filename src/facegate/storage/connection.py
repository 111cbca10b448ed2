"""Connections and transactions shared by the SQL backends.

A backend (``sqlite.py``, ``postgres.py``) supplies the connection, the transaction start, its
migrations and its integrity-error type; queries are written with ``?`` placeholders.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Connection:
    """A DB-API connection that takes ``?`` placeholders whatever the driver wants."""

    def __init__(self, raw: Any, placeholder: str) -> None:
        self.raw = raw
        self.placeholder = placeholder

    def execute(self, sql: str, args: Any = ()) -> Any:
        if self.placeholder != "?":
            sql = sql.replace("?", self.placeholder)
        return self.raw.execute(sql, args)


class SQLBase:
    """Connections (one per thread) and transactions. Subclasses set ``placeholder`` and
    ``integrity_errors`` and implement ``_connect``, ``_begin`` and ``migrate``."""

    placeholder = "?"
    integrity_errors: tuple[type[Exception], ...] = ()
    stores_protected_vectors = False  # True where the database itself indexes (pgvector)

    def __init__(self) -> None:
        self._local = threading.local()

    # -- connections and transactions ---------------------------------------------------------

    def _connect(self) -> Any:
        raise NotImplementedError

    def _begin(self, db: Connection) -> None:
        raise NotImplementedError

    def migrate(self) -> None:
        raise NotImplementedError

    def lock_tenant(self, tenant_id: str) -> None:
        """Serialise enrolments of one tenant across workers (inside ``tx``)."""

    def _lock_audit(self, db: Connection) -> None:
        """Serialise audit appends across workers (inside ``tx``)."""

    def _db(self) -> Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = Connection(self._connect(), self.placeholder)
            self._local.db = db
            self._local.depth = 0
        return db

    @contextmanager
    def tx(self) -> Iterator[Connection]:
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
