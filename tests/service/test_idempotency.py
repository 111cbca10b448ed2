"""Idempotency-Key: two enrolments with the same key and body create one template and get the
same answer; the same key with another body is refused; without the header nothing changes."""

from __future__ import annotations

from pathlib import Path

from tests.service.conftest import Server, consenting_subject, face

BIDEN_1 = "Joseph_Biden/face_recognition_biden.jpg"
BIDEN_2 = "Joseph_Biden/face_recognition_biden2.jpg"


def test_retries_with_one_key_enrol_once(server: Server, shared_data: Path) -> None:
    c = server.client()
    consenting_subject(c, "retried")
    files = {"image": ("f.jpg", face(shared_data, BIDEN_1), "image/jpeg")}
    boundary = {"Content-Type": "multipart/form-data; boundary=fixedboundary"}
    first = c.post(
        "/v1/subjects/retried/enroll",
        files=files,
        headers={"Idempotency-Key": "enrol-retried-1", **boundary},
    )
    again = c.post(
        "/v1/subjects/retried/enroll",
        files=files,
        headers={"Idempotency-Key": "enrol-retried-1", **boundary},
    )
    assert first.status_code == 201, first.text
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers.get("idempotency-replayed") == "true"
    assert c.get("/v1/subjects/retried").json()["templates"] == 1
    other = {"image": ("f.jpg", face(shared_data, BIDEN_2), "image/jpeg")}
    r = c.post(
        "/v1/subjects/retried/enroll",
        files=other,
        headers={"Idempotency-Key": "enrol-retried-1", **boundary},
    )
    assert r.status_code == 409 and r.json()["code"] == "idempotency_key_reused"
    # JSON bodies too, and a refusal is replayed as it was
    body = {"subject_id": "made-once"}
    a = c.post("/v1/subjects", json=body, headers={"Idempotency-Key": "create-1"})
    b = c.post("/v1/subjects", json=body, headers={"Idempotency-Key": "create-1"})
    assert a.status_code == b.status_code == 201 and a.json() == b.json()
    # another tenant's identical key is its own
    _, other_key = server.service.create_tenant("idem-other")
    r = server.client(other_key).post(
        "/v1/subjects", json=body, headers={"Idempotency-Key": "create-1"}
    )
    assert r.status_code == 201
