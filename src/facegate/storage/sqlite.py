"""SQLiteStore: the embedded default, one file in the data folder.

WAL mode lets readers and the one writer work at once; ``BEGIN IMMEDIATE`` takes the write lock
at the start of a transaction, which also serialises enrolments across worker processes.

Erasure is meant literally: every connection runs with ``secure_delete`` (deleted content is
overwritten with zeros, not left in free pages), and after an erasure ``purge_deleted``
checkpoints the WAL and truncates it, so that an erased template's ciphertext is in no file of
the data folder (tests/service/test_erasure_files.py). Copies made before (backups, snapshots)
are not reached: see README "Nothing worth stealing".
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from facegate.storage.connection import Connection
from facegate.storage.migrations import SQLITE
from facegate.storage.sql import SQLStore

log = logging.getLogger(__name__)


class SQLiteStore(SQLStore):
    placeholder = "?"
    integrity_errors = (sqlite3.IntegrityError,)
    # locked past the timeout, disk full, I/O error: the database is not usable right now
    connection_errors = (sqlite3.OperationalError,)

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = str(path)
        self.migrate()

    def _connect(self) -> Any:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA secure_delete=ON")
        return db

    def _begin(self, db: Connection) -> None:
        db.execute("BEGIN IMMEDIATE")

    def migrate(self) -> None:
        db = self._db().raw
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(SQLITE[version:], start=version + 1):
            db.executescript("BEGIN IMMEDIATE;" + script + f";PRAGMA user_version={number};COMMIT;")

    def purge_deleted(self) -> None:
        """Move every committed page into the database file (where ``secure_delete`` has zeroed
        deleted rows) and truncate the WAL, which still holds the pages written before the
        deletion. A reader of another worker can hold the checkpoint back for a moment: retried
        briefly, then logged (the next erasure or the next automatic checkpoint completes it)."""
        db = self._db().raw
        for attempt in range(20):
            busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy:
                return
            time.sleep(0.05 * (attempt + 1))
        log.warning("the WAL could not be truncated after an erasure (readers busy)")
