"""State that holds while serving (issue 16's faults): a damaged template row is quarantined and
every other subject keeps working; a transform renewed by another process moves every worker's
index; a master key rotated by another process is picked up; a database that drops its
connections is reconnected to without a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from tests.service.conftest import new_database

from facegate.errors import UnavailableError
from facegate.protection.crypto import load_keyring
from facegate.service import Caller, FaceService
from facegate.storage.postgres import PostgresStore
from facegate.storage.sqlite import SQLiteStore

BIDEN_1 = "Joseph_Biden/face_recognition_biden.jpg"
BIDEN_2 = "Joseph_Biden/face_recognition_biden2.jpg"
ALEX_1 = "alex_lacamoire/face_recognition_img1.jpg"
ALEX_2 = "alex_lacamoire/face_recognition_alex_lacamoire1.jpg"


def photo(shared_data: Path, rel: str) -> bytes:
    return (shared_data / "faces" / rel).read_bytes()


def two_workers(tmp_path: Path, engine) -> tuple[FaceService, FaceService, Caller]:
    db, keys = tmp_path / "f.sqlite3", tmp_path / "keys" / "master.keys"
    a = FaceService(SQLiteStore(db), load_keyring(keys), engine)
    tenant, _ = a.create_tenant("t", {"require_liveness": False})
    b = FaceService(SQLiteStore(db), load_keyring(keys), engine)
    return a, b, Caller(tenant.id, "test", frozenset({"enroll", "verify", "search", "admin"}))


def enrol(svc: FaceService, caller: Caller, sid: str, data: bytes) -> dict:
    svc.create_subject(caller, sid, None)
    svc.grant_consent(caller, sid, "face_verification", "1", "test")
    return svc.enroll(caller, sid, svc.probe_from_image(data), "photo")


def test_a_damaged_template_is_quarantined_not_fatal(tmp_path: Path, shared_data, engine) -> None:
    a, _, caller = two_workers(tmp_path, engine)
    damaged = enrol(a, caller, "damaged", photo(shared_data, BIDEN_1))["template_id"]
    enrol(a, caller, "fine", photo(shared_data, ALEX_1))
    with sqlite3.connect(tmp_path / "f.sqlite3") as db:  # a byte flipped in the sealed vector
        (blob,) = db.execute(
            "SELECT sealed_vector FROM templates WHERE id=?", (damaged,)
        ).fetchone()
        blob = blob[:20] + bytes([blob[20] ^ 1]) + blob[21:]
        db.execute("UPDATE templates SET sealed_vector=? WHERE id=?", (blob, damaged))
    restarted = FaceService(SQLiteStore(tmp_path / "f.sqlite3"), a.ring, engine)  # no error
    ok = restarted.verify(caller, "fine", restarted.probe_from_image(photo(shared_data, ALEX_2)))
    assert ok["match"] is True
    assert [t["template_id"] for t in restarted.quarantined(caller)["templates"]] == [damaged]
    actions = {r.action for r in restarted.store.audit_records(caller.tenant_id, "damaged")}
    assert "template.quarantined" in actions


def test_a_transform_renewed_elsewhere_moves_this_workers_index(
    tmp_path: Path, shared_data, engine
) -> None:
    a, b, caller = two_workers(tmp_path, engine)
    enrol(a, caller, "first", photo(shared_data, ALEX_1))
    b.renew_transform(caller.tenant_id)  # another process: the CLI, another machine
    again = enrol(a, caller, "second", photo(shared_data, ALEX_2))
    assert [d["subject_id"] for d in again["duplicates"]] == ["first"]
    hits = a.search(caller, "second", a.probe_from_image(photo(shared_data, ALEX_2)), 5)
    assert [h["subject_id"] for h in hits["candidates"]] == ["first"]


def test_a_master_key_rotated_elsewhere_is_picked_up(tmp_path: Path, shared_data, engine) -> None:
    a, b, caller = two_workers(tmp_path, engine)
    enrol(a, caller, "kept", photo(shared_data, BIDEN_1))
    assert b.rotate_master_key()["master_key_version"] == 2
    answer = a.verify(caller, "kept", a.probe_from_image(photo(shared_data, BIDEN_2)))
    assert answer["match"] is True and 2 in a.ring.keys
    # a ring from FACEGATE_MASTER_KEYS cannot reload: a clear 503 while serving, never a 500,
    # and a worker started with it refuses to start (it could open no tenant)
    stale = load_keyring(tmp_path / "unused", f"1:{a.ring.keys[1].hex()}")
    a.ctx.ring = stale
    with pytest.raises(UnavailableError) as info:
        a.verify(caller, "kept", a.probe_from_image(photo(shared_data, BIDEN_2)))
    assert info.value.code == "master_key_unknown" and info.value.status == 503
    with pytest.raises(UnavailableError):
        FaceService(SQLiteStore(tmp_path / "f.sqlite3"), stale, engine)


def test_lost_database_connections_are_reopened(postgres_server: str, tmp_path: Path) -> None:
    import psycopg

    url = new_database(postgres_server)
    store = PostgresStore(url)
    assert store.last_log_seq() == 0
    with psycopg.connect(url, autocommit=True) as admin:  # what a database restart does
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    answers = []
    for _ in range(3):
        try:
            answers.append(store.last_log_seq())
        except UnavailableError as exc:
            answers.append(exc.code)
    assert answers[-1] == 0, answers  # back without a restart
    assert set(answers) <= {0, "database_unavailable"}
