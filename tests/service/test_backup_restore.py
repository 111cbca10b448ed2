"""docs/operations.md's backup and restore, as an operator runs it: back up the SQLite database
while the service runs, keep the key file apart, restore both into a new place, and the restored
service verifies the enrolled face with its audit chain intact."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.service.conftest import consenting_subject, face, start_server, stop_server

from facegate.protection.crypto import load_keyring
from facegate.service import Caller, FaceService
from facegate.storage.audit import verify_audit_chain
from facegate.storage.sqlite import SQLiteStore

BIDEN_1 = "Joseph_Biden/face_recognition_biden.jpg"
BIDEN_2 = "Joseph_Biden/face_recognition_biden2.jpg"


def test_backup_while_serving_then_restore(engine, tmp_path: Path, shared_data: Path) -> None:
    server = start_server(engine, tmp_path / "live", liveness=False)
    try:
        c = server.client()
        consenting_subject(c, "kept")
        r = c.post(
            "/v1/subjects/kept/enroll", files={"image": ("f.jpg", face(shared_data, BIDEN_1))}
        )
        assert r.status_code == 201, r.text
        backup = tmp_path / "backup" / "facegate.sqlite3"
        backup.parent.mkdir()
        # the documented one-liner, run while the server is up
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sqlite3, sys; "
                "sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))",
                str(server.data_dir / "facegate.sqlite3"),
                str(backup),
            ],
            check=True,
        )
        keys = tmp_path / "keys-copy" / "master.keys"
        keys.parent.mkdir()
        shutil.copy(server.key_file, keys)
        tenant_id = c.get("/v1/tenant").json()["tenant_id"]
    finally:
        stop_server(server)

    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(backup, restored / "facegate.sqlite3")
    assert (
        sqlite3.connect(restored / "facegate.sqlite3")
        .execute("PRAGMA integrity_check")
        .fetchone()[0]
        == "ok"
    )
    service = FaceService(SQLiteStore(restored / "facegate.sqlite3"), load_keyring(keys), engine)
    caller = Caller(tenant_id, "restore-check", frozenset({"verify"}))
    answer = service.verify(caller, "kept", service.probe_from_image(face(shared_data, BIDEN_2)))
    assert answer["match"] is True
    ok, problems = verify_audit_chain(service.store.audit_records())
    assert ok, problems
