"""Connections and transactions shared by the SQL backends.

A backend (``sqlite.py``, ``postgres.py``) supplies the connection, the transaction start, its
migrations and its integrity-error type; queries are written with ``?`` placeholders.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from facegate.errors import UnavailableError


class Connection:
    """A DB-API connection that takes ``?`` placeholders whatever the driver wants, and that
    turns a lost database (a restart, a dropped socket, a full disk) into ``UnavailableError``
    (503): the connection is marked broken and the next use of the store opens a new one, so a
    worker recovers by itself when the database is back."""

    def __init__(self, raw: Any, placeholder: str, lost: tuple[type[Exception], ...] = ()) -> None:
        self.raw = raw
        self.placeholder = placeholder
        self.lost = lost
        self.broken = False

    def execute(self, sql: str, args: Any = ()) -> Any:
        if self.placeholder != "?":
            sql = sql.replace("?", self.placeholder)
        try:
            return self.raw.execute(sql, args)
        except self.lost as exc:
            self.broken = True
            raise database_unavailable() from exc


def database_unavailable() -> UnavailableError:
    return UnavailableError(
        "the database does not answer; try again shortly",
        code="database_unavailable",
        retry_after_s=2,
    )


class SQLBase:
    """Connections (one per thread) and transactions. Subclasses set ``placeholder`` and
    ``integrity_errors`` and implement ``_connect``, ``_begin`` and ``migrate``."""

    placeholder = "?"
    integrity_errors: tuple[type[Exception], ...] = ()
    # driver errors that mean "the database is not there" (never a constraint or a bad query)
    connection_errors: tuple[type[Exception], ...] = ()
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

    def _lock_log(self, db: Connection) -> None:
        """Before a ``template_log`` insert (inside ``tx``, held to its end): log entries must
        become visible in ``seq`` order, since workers tail the log with ``seq > last seen``."""

    def _db(self) -> Connection:
        db: Connection | None = getattr(self._local, "db", None)
        if db is not None and db.broken and not getattr(self._local, "depth", 0):
            self._drop(db)  # lost earlier: open a fresh connection (outside a transaction)
            db = None
        if db is None:
            try:
                raw = self._connect()
            except self.connection_errors as exc:
                raise database_unavailable() from exc
            db = Connection(raw, self.placeholder, self.connection_errors)
            self._local.db = db
            self._local.depth = 0
        return db

    def _drop(self, db: Connection) -> None:
        with contextlib.suppress(Exception):  # already gone: nothing to close
            db.raw.close()
        self._local.db = None

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
            if not db.broken:
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
