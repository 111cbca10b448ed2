"""Operator commands on a real data folder: serve, audit verify, keys rotate, renew-transform,
retention run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.service.conftest import consenting_subject, start_server, stop_server

from facegate.protection.crypto import load_keyring
from facegate.service import FaceService
from facegate.storage.audit_anchor import AuditAnchor
from facegate.storage.sqlite import SQLiteStore

CLI = [sys.executable, "-m", "facegate.cli.main"]
BIDEN_1 = "faces/Joseph_Biden/face_recognition_biden.jpg"
BIDEN_2 = "faces/Joseph_Biden/face_recognition_biden2.jpg"


def run(env: dict[str, str], *args: str) -> tuple[int, dict]:
    p = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=300)
    return p.returncode, json.loads(p.stdout)


@pytest.fixture()
def populated(engine, tmp_path: Path, shared_data: Path):
    server = start_server(engine, tmp_path, liveness=False)
    c = server.client()
    consenting_subject(c, "ops")
    r = c.post(
        "/v1/subjects/ops/enroll", files={"image": ("a.jpg", (shared_data / BIDEN_1).read_bytes())}
    )
    assert r.status_code == 201
    stop_server(server)
    server.service.store.close()
    # a server opened by ``facegate serve`` anchors the audit head itself; this one was built
    # by the test, so anchor it as the service would at shutdown
    store = SQLiteStore(server.data_dir / "facegate.sqlite3")
    AuditAnchor(
        server.key_file.parent / "audit.anchor", store, load_keyring(server.key_file)
    ).flush()
    store.close()
    env = {
        **os.environ,
        "FACEGATE_DATA_DIR": str(server.data_dir),
        "FACEGATE_KEY_FILE": str(server.key_file),
    }
    return server, env


def reopen(engine, server) -> FaceService:
    return FaceService(
        SQLiteStore(server.data_dir / "facegate.sqlite3"), load_keyring(server.key_file), engine
    )


def verify_score(engine, server, shared_data: Path) -> float:
    svc = reopen(engine, server)
    tenant = svc.store.list_tenants()[0]
    from facegate.service import Caller

    caller = Caller(tenant.id, "test", frozenset({"verify"}))
    out = svc.verify(caller, "ops", svc.probe_from_image((shared_data / BIDEN_2).read_bytes()))
    svc.store.close()
    return out["score"] if out["match"] else -1.0


def test_audit_verify_finds_tampering(populated) -> None:
    server, env = populated
    code, out = run(env, "audit", "verify")
    assert code == 0 and out["ok"] is True and out["records"] >= 4
    db = sqlite3.connect(server.data_dir / "facegate.sqlite3")
    with pytest.raises(sqlite3.DatabaseError):
        db.execute("UPDATE audit SET outcome='x' WHERE seq=2")  # the database refuses edits
    # an attacker with file access drops the guard and edits a record
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute("UPDATE audit SET outcome='ok_forged' WHERE seq=2")
    db.commit()
    code, out = run(env, "audit", "verify")
    assert code != 0 and out["ok"] is False
    assert any(p["seq"] == 2 and "altered" in p["problem"] for p in out["problems"])
    db.execute("DELETE FROM audit WHERE seq=3")
    db.commit()
    code, out = run(env, "audit", "verify")
    assert any("removed or reordered" in p["problem"] for p in out["problems"])


def test_audit_verify_finds_reordering(populated) -> None:
    server, env = populated
    db = sqlite3.connect(server.data_dir / "facegate.sqlite3")
    db.execute("DROP TRIGGER audit_no_update")
    rows = db.execute(
        "SELECT seq, at, actor, action, outcome, details FROM audit WHERE seq IN (2, 3)"
    ).fetchall()
    for (seq, *_), (_, at, actor, action, outcome, details) in zip(rows, reversed(rows)):
        db.execute(
            "UPDATE audit SET at=?, actor=?, action=?, outcome=?, details=? WHERE seq=?",
            (at, actor, action, outcome, details, seq),
        )
    db.commit()
    code, out = run(env, "audit", "verify")
    assert code != 0 and out["ok"] is False


def test_key_rotation_keeps_templates_usable(engine, populated, shared_data: Path) -> None:
    server, env = populated
    before = verify_score(engine, server, shared_data)
    code, out = run(env, "keys", "rotate")
    assert code == 0 and out["master_key_version"] == 2 and out["tenants_rewrapped"] >= 1
    assert load_keyring(server.key_file).current == 2
    assert abs(verify_score(engine, server, shared_data) - before) < 1e-6


def test_renewed_transform_makes_old_copies_useless(engine, populated, shared_data: Path) -> None:
    server, env = populated
    svc = reopen(engine, server)
    tenant = svc.store.list_tenants()[0]
    old_keys = svc.secrets_of(tenant)
    old_row = svc.store.templates_of(tenant.id, "ops")[0]
    svc.store.close()
    before = verify_score(engine, server, shared_data)
    code, out = run(env, "keys", "renew-transform", "--tenant", "alpha")
    assert code == 0 and out["transform_version"] == 2
    assert abs(verify_score(engine, server, shared_data) - before) < 1e-4  # still verifies
    # a copy of the template taken before renewal no longer matches a fresh probe
    from facegate.protection.tenant import template_aad

    stolen = old_keys.open_vector(
        old_row.sealed_vector, template_aad(tenant.id, "ops", old_row.id, old_row.space_id)
    )
    svc = reopen(engine, server)
    new_keys = svc.secrets_of(svc.store.get_tenant(tenant.id))
    probe = svc.probe_from_image((shared_data / BIDEN_2).read_bytes()).embedding
    assert float(stolen @ new_keys.protect(probe)) < svc.threshold("fmr_1e-2")[0]
    svc.store.close()


def test_retention_run_erases_expired(engine, populated) -> None:
    server, env = populated
    db = sqlite3.connect(server.data_dir / "facegate.sqlite3")
    db.execute("UPDATE subjects SET last_activity_at = last_activity_at - 4 * 365 * 86400")
    db.commit()
    code, out = run(env, "retention", "run")
    assert code == 0 and out["retention"]["alpha"]["subjects_erased"] == 1
    assert db.execute("SELECT COUNT(*) FROM templates").fetchone()[0] == 0
    code, out = run(env, "audit", "verify")
    assert out["ok"] is True


def test_serve_creates_the_data_folder_and_writes_an_admin_key(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "FACEGATE_DATA_DIR": str(tmp_path / "new" / "data"),
        "FACEGATE_KEY_FILE": str(tmp_path / "keys" / "master.keys"),
    }
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    key_file = tmp_path / "keys" / "first-admin-key"
    try:
        said = ""
        deadline = time.time() + 120
        while time.time() < deadline and "first admin key" not in said:
            said += proc.stderr.readline()
        assert str(key_file) in said and "fg_" not in said, said  # the path, never the key
        key = key_file.read_text().strip()
        assert key.startswith("fg_") and oct(key_file.stat().st_mode & 0o777) == "0o600"
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        r = httpx.get(
            f"http://127.0.0.1:{port}/v1/tenant", headers={"Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 200 and r.json()["name"] == "default"
        assert (tmp_path / "new" / "data" / "facegate.sqlite3").is_file()
        assert oct((tmp_path / "keys" / "master.keys").stat().st_mode & 0o777) == "0o600"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_commands_run_on_postgres(tmp_path: Path, request) -> None:
    """FACEGATE_DATABASE_URL moves the CLI (and the server) to PostgreSQL."""
    import psycopg
    from tests.service.conftest import new_database

    url = new_database(request.getfixturevalue("postgres_server"))
    env = {
        **os.environ,
        "FACEGATE_DATA_DIR": str(tmp_path / "data"),
        "FACEGATE_KEY_FILE": str(tmp_path / "keys"),
        "FACEGATE_DATABASE_URL": url,
    }
    code, out = run(env, "tenants", "create", "pg-tenant")
    assert code == 0 and out["admin_key"].startswith("fg_")
    code, out = run(env, "keys", "rotate")
    assert code == 0 and out["tenants_rewrapped"] == 1
    code, out = run(env, "audit", "verify")
    assert code == 0 and out["ok"] is True and out["records"] == 2
    with psycopg.connect(url) as db, pytest.raises(psycopg.errors.RaiseException):
        db.execute("UPDATE audit SET outcome = 'forged'")  # append-only in PostgreSQL too
    assert not (tmp_path / "data" / "facegate.sqlite3").exists()
