"""The audit log against a database writer without the master key: forged appends, deletion with
re-chaining, rewritten outcomes and a cut-off tail are all found by ``facegate audit verify``,
which reads the head anchored outside the data folder (next to the key file) by itself."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facegate.protection.audit_keys import AuditKey, chain_key
from facegate.protection.crypto import load_keyring
from facegate.storage.audit import GENESIS_HASH, audit_hash, keyed_hash
from facegate.storage.audit_anchor import AuditAnchor, read_anchor
from facegate.storage.sqlite import SQLiteStore

CLI = [sys.executable, "-m", "facegate.cli.main"]


def run(env: dict[str, str], *args: str) -> tuple[int, dict]:
    p = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=300)
    return p.returncode, json.loads(p.stdout)


@pytest.fixture()
def deployment(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A stopped deployment whose audit log has a few records, written by the CLI (which
    anchors the head at exit)."""
    env = {
        **os.environ,
        "FACEGATE_DATA_DIR": str(tmp_path / "data"),
        "FACEGATE_KEY_FILE": str(tmp_path / "keys" / "master.keys"),
    }
    for name in ("alpha", "bravo", "charlie"):
        assert run(env, "tenants", "create", name)[0] == 0
    code, out = run(env, "audit", "verify")
    assert code == 0 and out["ok"] is True, out
    assert out["anchor"]["seq"] == out["records"] >= 3
    # the anchor's default place is outside the data folder, next to the key file
    assert Path(out["anchor"]["path"]) == tmp_path / "keys" / "audit.anchor"
    assert not any(p.name.startswith("audit.anchor") for p in (tmp_path / "data").rglob("*"))
    return env, tmp_path / "data" / "facegate.sqlite3"


def unguarded(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("DROP TRIGGER audit_no_delete")
    return db


def rechain(db: sqlite3.Connection, key: AuditKey | None) -> None:
    """What a writer who rewrites the log does next: recompute every hash from the genesis,
    unkeyed (``key`` None) or under a key of its own."""
    cols = ("seq", "at", "tenant_id", "actor", "action", "subject_id", "outcome", "details")
    prev = GENESIS_HASH
    for row in db.execute(f"SELECT {', '.join(cols)} FROM audit ORDER BY seq").fetchall():
        record = dict(zip(cols, row))
        record["details"] = json.loads(record["details"])
        h = audit_hash(prev, record) if key is None else keyed_hash(key, prev, record)
        db.execute(
            "UPDATE audit SET prev_hash=?, hash=?, key_version=? WHERE seq=?",
            (prev, h, None if key is None else key.version, record["seq"]),
        )
        prev = h
    db.commit()


def test_deleting_the_last_rows_fails_verify(deployment) -> None:
    """The contract: cut-off tail of a stopped SQLite database, triggers dropped."""
    env, path = deployment
    db = unguarded(path)
    db.execute("DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)")
    db.commit()
    code, out = run(env, "audit", "verify")
    assert code != 0 and out["ok"] is False
    assert any("removed from the end" in p["problem"] for p in out["problems"])


@pytest.mark.parametrize("key", [None, AuditKey(1, b"\x00" * 32)], ids=["unkeyed", "wrong-key"])
def test_deletion_with_rechaining_fails_verify(deployment, key) -> None:
    env, path = deployment
    db = unguarded(path)
    last = db.execute("SELECT MAX(seq) FROM audit").fetchone()[0]
    db.execute("DELETE FROM audit WHERE seq = 2")
    for seq in range(3, last + 1):
        db.execute("UPDATE audit SET seq = ? WHERE seq = ?", (seq - 1, seq))
    db.commit()
    rechain(db, key)
    code, out = run(env, "audit", "verify")
    assert code != 0 and out["ok"] is False, out


def test_rewritten_outcome_fails_verify_even_rechained(deployment) -> None:
    env, path = deployment
    db = unguarded(path)
    db.execute("UPDATE audit SET outcome = 'denied' WHERE seq = 2")
    db.commit()
    code, out = run(env, "audit", "verify")
    assert code != 0 and any(p["seq"] == 2 and "altered" in p["problem"] for p in out["problems"])
    rechain(db, None)  # every hash recomputed, unkeyed: the anchored head no longer matches
    code, out = run(env, "audit", "verify")
    assert code != 0 and any("anchored head" in p["problem"] for p in out["problems"])


def test_forged_append_fails_verify(deployment) -> None:
    env, path = deployment
    db = unguarded(path)
    seq, prev = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    record = {
        "seq": seq + 1,
        "at": time.time(),
        "tenant_id": None,
        "actor": "operator",
        "action": "keys.rotate_master",
        "subject_id": None,
        "outcome": "ok",
        "details": {},
    }
    for key_version, h in (
        (None, audit_hash(prev, record)),
        (1, keyed_hash(AuditKey(1, os.urandom(32)), prev, record)),
    ):
        db.execute("DELETE FROM audit WHERE seq = ?", (seq + 1,))
        db.execute(
            "INSERT INTO audit (seq, at, tenant_id, actor, action, subject_id, outcome, details,"
            " prev_hash, hash, key_version) VALUES (?, ?, NULL, ?, ?, NULL, ?, '{}', ?, ?, ?)",
            (seq + 1, record["at"], "operator", "keys.rotate_master", "ok", prev, h, key_version),
        )
        db.commit()
        code, out = run(env, "audit", "verify")
        assert code != 0 and any(p["seq"] == seq + 1 for p in out["problems"]), out


def test_an_altered_anchor_fails_verify(deployment, tmp_path: Path) -> None:
    env, _ = deployment
    anchor = tmp_path / "keys" / "audit.anchor"
    data = json.loads(anchor.read_text())
    data["seq"] -= 1  # move the head back to hide the last record
    anchor.write_text(json.dumps(data))
    code, out = run(env, "audit", "verify")
    assert code != 0 and any("anchor" in p["problem"] for p in out["problems"])
    anchor.unlink()  # a missing anchor is not a clean bill of health either
    code, out = run(env, "audit", "verify")
    assert code != 0 and any("no audit anchor" in p["problem"] for p in out["problems"])


def test_signed_checkpoint(deployment, tmp_path: Path) -> None:
    env, _ = deployment
    code, out = run(env, "audit", "checkpoint")
    assert code == 0 and out["checkpoint"]["seq"] == out["records"]
    stored = tmp_path / "checkpoint.json"
    stored.write_text(json.dumps(out["checkpoint"]))
    assert run(env, "audit", "verify", "--checkpoint", str(stored))[0] == 0
    forged = {**out["checkpoint"], "seq": out["checkpoint"]["seq"] - 1}
    stored.write_text(json.dumps(forged))
    code, out = run(env, "audit", "verify", "--checkpoint", str(stored))
    assert code != 0 and any("checkpoint" in p["problem"] for p in out["problems"])


def test_the_anchor_follows_a_running_writer_and_never_blesses_a_cut(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite3")
    ring = load_keyring(tmp_path / "keys" / "master.keys")
    path = tmp_path / "keys" / "audit.anchor"
    store.audit_anchor = anchor = AuditAnchor(path, store, ring, interval_s=0.1)

    def append(n: int) -> None:
        for _ in range(n):
            store.append_audit(
                at=time.time(),
                tenant_id=None,
                actor="test",
                action="x",
                subject_id=None,
                outcome="ok",
                details={},
                audit_key=chain_key(ring),
            )

    append(5)
    deadline = time.time() + 10
    while time.time() < deadline and (path.exists() is False or read_anchor(path, ring).seq < 5):
        time.sleep(0.05)
    head = read_anchor(path, ring)
    assert head is not None and head.seq == 5  # anchored within moments, by the writer itself
    db = unguarded(tmp_path / "db.sqlite3")
    db.execute("DELETE FROM audit WHERE seq >= 4")
    db.commit()
    db.close()
    append(3)  # records 4, 5, 6 again: the anchored record 5 is not the one now in the log
    assert anchor.flush() == head  # refused: the anchor keeps the evidence
    assert read_anchor(path, ring) == head
    store.close()


def test_scores_and_duplicate_links_are_sealed(engine, shared_data: Path, tmp_path: Path) -> None:
    from tests.service.conftest import consenting_subject, start_server, stop_server

    server = start_server(engine, tmp_path, liveness=False)
    c = server.client()
    photo = (shared_data / "faces/Joseph_Biden/face_recognition_biden.jpg").read_bytes()
    for sid in ("one", "two"):
        consenting_subject(c, sid)
        assert c.post(f"/v1/subjects/{sid}/enroll", files={"image": ("a.jpg", photo)}).is_success
    assert c.post("/v1/subjects/one/verify", files={"image": ("a.jpg", photo)}).json()["match"]
    # the tenant's own export opens them (duplicate links stay out of a data-subject export)
    exported = c.get("/v1/subjects/one/export").json()["audit"]
    stop_server(server)
    verify = [a for a in exported if a["action"] == "verify"]
    assert verify and isinstance(verify[0]["details"]["score"], float)
    assert not any("duplicates" in a["details"] for a in exported)
    db = sqlite3.connect(server.data_dir / "facegate.sqlite3")
    details = [json.loads(d) for (d,) in db.execute("SELECT details FROM audit")]
    assert not any({"score", "duplicates"} & d.keys() for d in details)
    assert sum("sealed" in d for d in details) >= 3  # two enrolments and a verification
    server.service.store.close()
