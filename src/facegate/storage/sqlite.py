"""SQLiteStore: the embedded default, one file in the data folder.

WAL mode lets readers and the one writer work at once; ``BEGIN IMMEDIATE`` takes the write lock
at the start of a transaction, which also serialises enrolments across worker processes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from facegate.storage.connection import Connection
from facegate.storage.migrations import SQLITE
from facegate.storage.sql import SQLStore


class SQLiteStore(SQLStore):
    placeholder = "?"
    integrity_errors = (sqlite3.IntegrityError,)

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
        return db

    def _begin(self, db: Connection) -> None:
        db.execute("BEGIN IMMEDIATE")

    def migrate(self) -> None:
        db = self._db().raw
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(SQLITE[version:], start=version + 1):
            db.executescript("BEGIN IMMEDIATE;" + script + f";PRAGMA user_version={number};COMMIT;")
