"""Erasure is erasure: after ``DELETE /v1/subjects/{id}`` (and after consent withdrawal) the erased
template's sealed bytes are in no file of the SQLite data folder: not in the database file
(``secure_delete`` zeroes deleted rows) and not in the WAL (checkpointed and truncated)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.service.conftest import consenting_subject, start_server, stop_server

PHOTOS = (
    "faces/Joseph_Biden/face_recognition_biden.jpg",
    "faces/Joseph_Biden/face_recognition_biden2.jpg",
)


def sealed_bytes(data_dir: Path, subject_id: str) -> list[bytes]:
    with sqlite3.connect(data_dir / "facegate.sqlite3") as db:
        rows = db.execute(
            "SELECT sealed_vector FROM templates WHERE subject_id=?", (subject_id,)
        ).fetchall()
    db.close()
    return [bytes(r[0]) for r in rows]


def found_in(data_dir: Path, needle: bytes) -> list[str]:
    """Files holding the ciphertext, or any 32-byte window of it."""
    windows = [needle[i : i + 32] for i in range(0, len(needle) - 32, 32)]
    hits = []
    for p in data_dir.rglob("*"):
        if p.is_file():
            blob = p.read_bytes()
            if needle in blob or any(w in blob for w in windows):
                hits.append(p.name)
    return hits


def test_erased_templates_leave_no_bytes_in_the_data_folder(
    engine, shared_data: Path, tmp_path: Path
) -> None:
    server = start_server(engine, tmp_path, liveness=False)
    try:
        c = server.client()
        for sid, photo in zip(("erased", "withdrawn"), PHOTOS):
            consenting_subject(c, sid)
            image = (shared_data / photo).read_bytes()
            assert c.post(
                f"/v1/subjects/{sid}/enroll", files={"image": ("a.jpg", image)}
            ).is_success
        consenting_subject(c, "kept")
        image = (shared_data / PHOTOS[0]).read_bytes()
        r = c.post("/v1/subjects/kept/enroll", files={"image": ("a.jpg", image)})
        assert r.is_success
        erased = sealed_bytes(server.data_dir, "erased")
        withdrawn = sealed_bytes(server.data_dir, "withdrawn")
        kept = sealed_bytes(server.data_dir, "kept")
        assert erased and withdrawn and kept
        assert found_in(server.data_dir, erased[0])  # the search can find what is there
        assert c.delete("/v1/subjects/erased").is_success
        assert c.delete("/v1/subjects/withdrawn/consents").is_success
        for blob in erased + withdrawn:
            assert found_in(server.data_dir, blob) == []
        assert found_in(server.data_dir, kept[0])  # only the erased ones are gone
        wal = server.data_dir / "facegate.sqlite3-wal"
        assert not wal.exists() or wal.stat().st_size < 64 * 1024
    finally:
        stop_server(server)
