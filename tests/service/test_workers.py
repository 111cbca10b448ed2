"""Several workers on one database: the same face enrolled at the same moment under two subject
ids is always flagged, and the audit chain stays intact. Each "worker" is its own FaceService
(own connections, own in-process index), as in separate processes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from tests.service.conftest import new_database

from facegate.protection.crypto import load_keyring
from facegate.service import Caller, FaceService
from facegate.service.index import DatabaseIndex
from facegate.storage.audit import verify_audit_chain
from facegate.storage.postgres import PostgresStore
from facegate.storage.sqlite import SQLiteStore

ROUNDS = 4
PHOTOS = ["Joseph_Biden/face_recognition_biden.jpg", "Joseph_Biden/face_recognition_biden2.jpg"]


def workers(backend: str, tmp_path: Path, engine, request) -> list[FaceService]:
    ring_file = tmp_path / "master.keys"
    if backend.startswith("postgres"):
        url = new_database(request.getfixturevalue("postgres_server"))
        if backend == "postgres":  # the default: each worker's in-memory index, fed by the log
            return [
                FaceService(PostgresStore(url), load_keyring(ring_file), engine) for _ in range(2)
            ]
        stores = [PostgresStore(url, unsealed_index=True) for _ in range(2)]  # the opt-in
        return [
            FaceService(s, load_keyring(ring_file), engine, None, DatabaseIndex(s)) for s in stores
        ]
    path = tmp_path / "facegate.sqlite3"
    return [FaceService(SQLiteStore(path), load_keyring(ring_file), engine) for _ in range(2)]


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "postgres-unsealed"])
def test_parallel_enrolments_of_one_face_are_always_flagged(
    backend: str, tmp_path: Path, engine, request, shared_data: Path
) -> None:
    a, b = workers(backend, tmp_path, engine, request)
    tenant, _ = a.create_tenant("race", {"require_liveness": False})
    caller = Caller(tenant.id, "test", frozenset({"enroll", "admin"}))
    probes = [a.probe_from_image((shared_data / "faces" / p).read_bytes()) for p in PHOTOS]
    for r in range(ROUNDS):
        ids = [f"r{r}-x", f"r{r}-y"]
        for sid in ids:
            a.create_subject(caller, sid, None)
            a.grant_consent(caller, sid, "face_verification", "1", "test")
        results: dict[str, dict] = {}
        barrier = threading.Barrier(2)

        def enrol(service: FaceService, sid: str, probe, results=results, barrier=barrier) -> None:
            barrier.wait()
            results[sid] = service.enroll(caller, sid, probe, "photo")

        threads = [
            threading.Thread(target=enrol, args=(svc, sid, probe))
            for svc, sid, probe in zip((a, b), ids, probes)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert set(results) == set(ids)
        flagged = [sid for sid in ids if results[sid]["duplicates"]]
        assert flagged, f"round {r}: both enrolments passed without a duplicate flag"
        # erase the pair so the next round starts from a gallery without this face
        for sid in ids:
            a.erase_subject(caller, sid)
    ok, problems = verify_audit_chain(a.store.audit_records())
    assert ok, problems
