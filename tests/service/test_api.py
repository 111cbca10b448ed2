"""The REST API over real HTTP with real faces: consent, enrolment, verification, search,
duplicates, isolation, erasure, limits and errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.service.conftest import (
    EVALUATION_TENANT,
    consenting_subject,
    face,
    start_server,
    stop_server,
)

BIDEN_1 = "Joseph_Biden/face_recognition_biden.jpg"
BIDEN_2 = "Joseph_Biden/face_recognition_biden2.jpg"
ALEX_1 = "alex_lacamoire/face_recognition_img1.jpg"
ALEX_2 = "alex_lacamoire/face_recognition_alex_lacamoire1.jpg"


def upload(data: bytes, name: str = "image") -> dict:
    return {name: ("face.jpg", data, "image/jpeg")}


def test_openapi_and_health(server) -> None:
    c = server.client()
    spec = c.get("/openapi.json").json()
    assert "/v1/subjects/{subject_id}/verify" in spec["paths"]
    assert c.get("/docs").status_code == 404  # Swagger UI loads a CDN: off unless asked
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/readyz").json()["status"] == "ready"


def test_authentication_and_roles(server) -> None:
    anon = server.client("fg_nope_nope")
    r = anon.get("/v1/tenant")
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "urn:facegate:problem:unauthenticated"
    c = server.client()
    verify_key = c.post("/v1/keys", json={"roles": ["verify"], "label": "kiosk"}).json()["key"]
    r = server.client(verify_key).post("/v1/subjects", json={"subject_id": "x"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


def test_enrol_and_verify_with_consent(server, shared_data: Path) -> None:
    c = server.client()
    assert c.post("/v1/subjects", json={"subject_id": "biden"}).status_code == 201
    r = c.post("/v1/subjects/biden/enroll", files=upload(face(shared_data, BIDEN_1)))
    assert r.status_code == 403 and r.json()["code"] == "consent_required"
    version = c.get("/v1/tenant").json()["consent_text_version"]
    r = c.post("/v1/subjects/biden/consents", json={"text_version": "0", "method": "x"})
    assert r.status_code == 422 and r.json()["code"] == "consent_text_outdated"
    r = c.post("/v1/subjects/biden/consents", json={"text_version": version, "method": "checkbox"})
    assert r.status_code == 201
    r = c.post("/v1/subjects/biden/enroll", files=upload(face(shared_data, BIDEN_1)))
    assert r.status_code == 201, r.text
    assert r.json()["quality"]["sharpness"]["passed"] is True
    r = c.post("/v1/subjects/biden/verify", files=upload(face(shared_data, BIDEN_2)))
    body = r.json()
    assert r.status_code == 200 and body["match"] is True
    assert (
        body["threshold"] > 0
        and body["fmr_target"] == 1e-3
        and body["liveness"]["checked"] is False
    )
    r = c.post("/v1/subjects/biden/verify", files=upload(face(shared_data, ALEX_1)))
    assert r.json()["match"] is False


def test_bad_inputs_are_problems(server, shared_data: Path) -> None:
    c = server.client()
    consenting_subject(c, "bad-inputs")
    cases = [
        (b"", 400, "empty_file"),
        (b"just some text, not a picture\n" * 10, 400, "not_an_image"),
        (
            face(shared_data, BIDEN_1)[: len(face(shared_data, BIDEN_1)) // 2],
            400,
            "truncated_image",
        ),
    ]
    for data, status, code in cases:
        r = c.post("/v1/subjects/bad-inputs/enroll", files=upload(data))
        assert (r.status_code, r.json()["code"]) == (status, code)
    r = c.post("/v1/subjects/bad-inputs/enroll")
    assert r.status_code == 400 and r.json()["code"] == "missing_probe"
    r = c.post("/v1/subjects/nobody/verify", files=upload(face(shared_data, BIDEN_1)))
    assert r.status_code == 404


def test_duplicate_faces_are_flagged_and_clustered(server, shared_data: Path) -> None:
    c = server.client()
    for sid, photo in (("alex-a", ALEX_1), ("alex-b", ALEX_2)):
        consenting_subject(c, sid)
        r = c.post(f"/v1/subjects/{sid}/enroll", files=upload(face(shared_data, photo)))
        assert r.status_code == 201, r.text
    assert [d["subject_id"] for d in r.json()["duplicates"]] == ["alex-a"]
    clusters = c.get("/v1/duplicates").json()["clusters"]
    assert any(set(cl["subjects"]) == {"alex-a", "alex-b"} for cl in clusters)
    search_key = c.post("/v1/keys", json={"roles": ["search"]}).json()["key"]
    hits = (
        server.client(search_key)
        .post("/v1/search", data={"subject_id": "alex-b"}, files=upload(face(shared_data, ALEX_1)))
        .json()["candidates"]
    )
    assert [h["subject_id"] for h in hits] == ["alex-a"]
    # reject policy
    assert c.patch("/v1/tenant", json={"duplicate_policy": "reject"}).status_code == 200
    consenting_subject(c, "alex-c")
    r = c.post("/v1/subjects/alex-c/enroll", files=upload(face(shared_data, ALEX_2)))
    assert r.status_code == 409 and r.json()["code"] == "duplicate_face"
    c.patch("/v1/tenant", json={"duplicate_policy": "flag"})


def test_tenant_isolation(server, shared_data: Path) -> None:
    a = server.client()
    consenting_subject(a, "iso-a")
    assert (
        a.post("/v1/subjects/iso-a/enroll", files=upload(face(shared_data, BIDEN_1))).status_code
        == 201
    )
    _, b_key = server.service.create_tenant("bravo", EVALUATION_TENANT)
    b = server.client(b_key)
    assert b.get("/v1/subjects/iso-a").status_code == 404
    assert b.get("/v1/subjects/never-existed").status_code == 404  # indistinguishable
    assert (
        b.post("/v1/subjects/iso-a/verify", files=upload(face(shared_data, BIDEN_2))).status_code
        == 404
    )
    consenting_subject(b, "iso-b")
    b.post("/v1/subjects/iso-b/enroll", files=upload(face(shared_data, BIDEN_2)))
    b_search = b.post("/v1/keys", json={"roles": ["search"]}).json()["key"]
    hits = (
        server.client(b_search)
        .post("/v1/search", data={"subject_id": "iso-b"}, files=upload(face(shared_data, BIDEN_2)))
        .json()
    )
    # the same face enrolled in tenant alpha is invisible: only bravo's own template is there
    assert hits["candidates"] == [] and hits["gallery_size"] == 1
    assert b.delete("/v1/subjects/iso-a").status_code == 404


def test_withdrawal_erases_and_export_has_no_biometrics(server, shared_data: Path) -> None:
    c = server.client()
    consenting_subject(c, "withdraw")
    c.post("/v1/subjects/withdraw/enroll", files=upload(face(shared_data, BIDEN_1)))
    export = c.get("/v1/subjects/withdraw/export").json()
    assert export["templates"][0]["biometric_data"].startswith("withheld")
    assert "sealed" not in str(export) and "vector" not in str(export)
    r = c.delete("/v1/subjects/withdraw/consents").json()
    assert r["templates_erased"] == 1
    r = c.post("/v1/subjects/withdraw/verify", files=upload(face(shared_data, BIDEN_2)))
    assert r.status_code == 403 and r.json()["code"] == "consent_required"
    assert (
        server.service.store.templates_of(
            r.request.headers and c.get("/v1/tenant").json()["tenant_id"], "withdraw"
        )
        == []
    )
    actions = [a["action"] for a in c.get("/v1/subjects/withdraw/export").json()["audit"]]
    assert "consent.withdraw" in actions and "enroll" in actions


def test_lockout_after_repeated_failures(server, shared_data: Path) -> None:
    c = server.client()
    consenting_subject(c, "lock")
    c.post("/v1/subjects/lock/enroll", files=upload(face(shared_data, BIDEN_1)))
    wrong = face(shared_data, ALEX_1)
    for _ in range(5):
        assert c.post("/v1/subjects/lock/verify", files=upload(wrong)).json()["match"] is False
    r = c.post("/v1/subjects/lock/verify", files=upload(face(shared_data, BIDEN_2)))
    assert r.status_code == 423 and r.json()["code"] == "subject_locked"
    assert int(r.headers["Retry-After"]) > 0 and "non_face_alternative" in r.json()


def test_id_document_enrolment(server, shared_data: Path) -> None:
    c = server.client()
    consenting_subject(c, "realname")
    files = {
        "document": ("id.jpg", face(shared_data, ALEX_1), "image/jpeg"),
        "image": ("live.jpg", face(shared_data, BIDEN_2), "image/jpeg"),
    }
    r = c.post("/v1/subjects/realname/enroll/id-document", files=files)
    assert r.status_code == 422 and r.json()["code"] == "document_mismatch"
    files["document"] = ("id.jpg", face(shared_data, BIDEN_1), "image/jpeg")
    r = c.post("/v1/subjects/realname/enroll/id-document", files=files)
    assert r.status_code == 201 and r.json()["source"] == "id_document_match"
    assert r.json()["document_match"]["score"] >= r.json()["document_match"]["threshold"]


def test_limits(engine, tmp_path: Path, shared_data: Path) -> None:
    s = start_server(engine, tmp_path, rate_per_minute=30, max_body=200_000, liveness=False)
    try:
        c = s.client()
        big = face(shared_data, BIDEN_1)
        assert len(big) > 200_000
        consenting_subject(c, "limits")
        r = c.post("/v1/subjects/limits/enroll", files=upload(big))
        assert r.status_code == 413 and r.json()["code"] == "body_too_large"
        codes = [c.get("/v1/tenant").status_code for _ in range(5)]
        assert 429 in codes
    finally:
        stop_server(s)


def test_liveness_session_enrols_and_is_single_use(server, shared_data: Path) -> None:
    c = server.client()
    consenting_subject(c, "live")
    consenting_subject(c, "other")
    # an evaluation tenant (allow_chosen_actions): the recorded video can answer fixed actions
    body = {"actions": ["blink", "open_mouth"], "flash": False}
    ch = c.post("/v1/liveness/challenges", json={**body, "subject_id": "live", "purpose": "enroll"})
    assert ch.status_code == 201, ch.text
    ch = ch.json()
    video = (shared_data / "videos/liveportrait_d18.mp4").read_bytes()
    files = {"video": ("v.mp4", video, "video/mp4")}
    r = c.post("/v1/liveness/sessions", data={"token": ch["token"]}, files=files)
    assert r.status_code == 201, r.text
    session = r.json()
    assert session["live"] is True and session["session_id"]
    r = c.post("/v1/liveness/sessions", data={"token": ch["token"]}, files=files)
    assert r.status_code == 409 and r.json()["code"] == "challenge_used"
    # bound: not for another subject, not for another purpose (and such a try spends nothing)
    r = c.post("/v1/subjects/other/enroll", data={"liveness_session": session["session_id"]})
    assert r.status_code == 409 and r.json()["code"] == "liveness_session_invalid"
    r = c.post("/v1/subjects/live/verify", data={"liveness_session": session["session_id"]})
    assert r.status_code == 409 and r.json()["code"] == "liveness_session_invalid"
    r = c.post("/v1/subjects/live/enroll", data={"liveness_session": session["session_id"]})
    assert r.status_code == 201 and r.json()["liveness"]["live"] is True
    r = c.post("/v1/subjects/live/enroll", data={"liveness_session": session["session_id"]})
    assert r.status_code == 409 and r.json()["code"] == "liveness_session_invalid"
    # a challenge asking for what the video does not show is not live, and gives no session
    ch = c.post("/v1/liveness/challenges", json={"actions": ["turn_left"], "flash": False}).json()
    form = {"token": ch["token"], "subject_id": "live", "purpose": "verify"}
    r = c.post("/v1/liveness/sessions", data=form, files=files).json()
    assert r["live"] is False and r["session_id"] is None
    assert "action_missing" in {x["code"] for x in r["reasons"]}
    # an unbound challenge needs to be told what it is for
    ch = c.post("/v1/liveness/challenges", json=body).json()
    r = c.post("/v1/liveness/sessions", data={"token": ch["token"]}, files=files)
    assert r.status_code == 400 and r.json()["code"] == "subject_required"
    # another tenant's challenge token is worthless here
    _, other = server.service.create_tenant(f"charlie-{time.time_ns()}")
    foreign = server.client(other).post("/v1/liveness/challenges", json={}).json()["token"]
    r = c.post("/v1/liveness/sessions", data={"token": foreign}, files=files)
    assert r.status_code == 400 and r.json()["code"] == "invalid_challenge"


@pytest.mark.parametrize("path", ["/v1/subjects/x/verify", "/v1/search"])
def test_no_temp_files_are_written(
    server, shared_data: Path, path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload over Starlette's 1 MB spool size is still never written to disk. The server runs
    in this process: every way Python's tempfile makes a file is recorded, and the temp folder is
    a private one (so other processes writing to /tmp cannot make the test fail). A spooled file
    rolled over to disk goes through ``tempfile.TemporaryFile``, which on Linux leaves no entry in
    any folder (O_TMPFILE): the call itself is what shows it."""
    import tempfile

    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    made: list[str] = []
    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
        original = getattr(tempfile, name)

        def record(*args, _name=name, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            made.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(tempfile, name, record)
    c = server.client()
    big = face(shared_data, BIDEN_1) + b"\0" * (2 << 20)  # over Starlette's 1 MB spool size
    c.post(path, data={"subject_id": "x"}, files=upload(big))
    assert made == [] and list(private.iterdir()) == []
