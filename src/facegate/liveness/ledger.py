"""Single use: a challenge id may be spent once. A SQLite table with the id as primary key
makes "spend" atomic across processes; expired entries are pruned as new ones arrive."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from facegate.errors import ChallengeUsedError
from facegate.liveness.challenge import Challenge


class ChallengeLedger:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS spent_challenges ("
                " id TEXT PRIMARY KEY, expires_at REAL NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def spend(self, challenge: Challenge, *, now: float) -> None:
        """Mark the challenge used, or raise ``ChallengeError("challenge_used")``."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM spent_challenges WHERE expires_at < ?", (now - 3600,))
            try:
                db.execute(
                    "INSERT INTO spent_challenges (id, expires_at) VALUES (?, ?)",
                    (challenge.id, challenge.expires_at),
                )
            except sqlite3.IntegrityError as exc:
                db.execute("ROLLBACK")
                raise ChallengeUsedError("this challenge was already used") from exc
            db.execute("COMMIT")
        finally:
            db.close()
