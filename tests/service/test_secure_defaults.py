"""Secure by default (issue 14): each finding of the attack on a fresh service, as a test that
failed before and passes now, over real HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from tests.service.conftest import Server, consenting_subject, face

BIDEN_1 = "Joseph_Biden/face_recognition_biden.jpg"
BIDEN_2 = "Joseph_Biden/face_recognition_biden2.jpg"
ALEX_1 = "alex_lacamoire/face_recognition_img1.jpg"
ALEX_2 = "alex_lacamoire/face_recognition_alex_lacamoire1.jpg"


def upload(data: bytes, name: str = "image") -> dict:
    return {name: ("face.jpg", data, "image/jpeg")}


def fresh_tenant(server: Server, name: str) -> httpx.Client:
    """A tenant created with every default, as `facegate serve` creates one."""
    _, key = server.service.create_tenant(f"{name}-{time.time_ns()}")
    return server.client(key)


def stills_allowed(client: httpx.Client) -> None:
    r = client.patch("/v1/tenant", json={"require_liveness": False})
    assert r.status_code == 200 and r.json()["require_liveness"] is False


def test_a_fresh_tenant_refuses_still_photos(server: Server, shared_data: Path) -> None:
    c = fresh_tenant(server, "fresh")
    assert c.get("/v1/tenant").json()["require_liveness"] is True
    consenting_subject(c, "still")
    for path in ("/v1/subjects/still/enroll", "/v1/subjects/still/verify"):
        r = c.post(path, files=upload(face(shared_data, BIDEN_1)))
        assert 400 <= r.status_code < 500 and r.json()["code"] == "liveness_required", r.text
    files = {
        "document": ("id.jpg", face(shared_data, BIDEN_1), "image/jpeg"),
        "image": ("live.jpg", face(shared_data, BIDEN_2), "image/jpeg"),
    }
    r = c.post("/v1/subjects/still/enroll/id-document", files=files)
    assert r.json()["code"] == "liveness_required" and "document_match" not in r.text
    # switching it off is an admin's audited choice, and the answer says nothing was checked
    stills_allowed(c)
    r = c.post("/v1/subjects/still/enroll", files=upload(face(shared_data, BIDEN_1)))
    assert r.status_code == 201 and r.json()["liveness"]["checked"] is False
    audit = c.get("/v1/subjects/still/export").json()["audit"]
    assert audit  # the subject's own trail; the tenant change is in the tenant's audit
    verify_key = c.post("/v1/keys", json={"roles": ["verify"]}).json()["key"]
    r = server.client(verify_key).patch("/v1/tenant", json={"require_liveness": True})
    assert r.status_code == 403


def test_challenges_are_the_servers_choice(server: Server) -> None:
    c = fresh_tenant(server, "challenges")
    ch = c.post("/v1/liveness/challenges", json={}).json()
    assert len(ch["actions"]) >= 2 and ch["flash"]
    assert ch["expires_at"] - ch["issued_at"] <= 60
    r = c.post("/v1/liveness/challenges", json={"actions": ["blink"]})
    assert 400 <= r.status_code < 500 and r.json()["code"] == "chosen_actions_not_allowed"
    r = c.post("/v1/liveness/challenges", json={"flash": False})
    assert 400 <= r.status_code < 500 and r.json()["code"] == "chosen_actions_not_allowed"
    # the evaluation setting, an admin's audited opt-in
    assert c.patch("/v1/tenant", json={"allow_chosen_actions": True}).status_code == 200
    ch = c.post("/v1/liveness/challenges", json={"actions": ["blink"], "flash": False}).json()
    assert ch["actions"] == ["blink"] and not ch["flash"]


def test_challenges_are_bound_and_counted(server: Server) -> None:
    c = fresh_tenant(server, "bound")
    consenting_subject(c, "minted")
    body = {"subject_id": "minted", "purpose": "verify"}
    answers = [c.post("/v1/liveness/challenges", json=body) for _ in range(6)]
    assert [a.status_code for a in answers[:5]] == [201] * 5
    ch = answers[0].json()
    assert ch["subject_id"] == "minted" and ch["purpose"] == "verify"
    # challenges nobody answered count as failures: minting until one fits locks the subject
    assert answers[5].status_code == 423 and answers[5].json()["code"] == "subject_locked"
    r = c.post("/v1/liveness/challenges", json={"subject_id": "nobody", "purpose": "verify"})
    assert r.status_code == 404


def test_lockout_lasts_its_full_duration(server: Server, shared_data: Path) -> None:
    c = fresh_tenant(server, "lockout")
    stills_allowed(c)
    consenting_subject(c, "locked")
    assert (
        c.post("/v1/subjects/locked/enroll", files=upload(face(shared_data, BIDEN_1))).status_code
        == 201
    )
    wrong = face(shared_data, ALEX_1)
    for _ in range(5):
        r = c.post("/v1/subjects/locked/verify", files=upload(wrong))
        assert r.status_code == 200 and r.json()["match"] is False
    genuine = upload(face(shared_data, BIDEN_2))
    r = c.post("/v1/subjects/locked/verify", files=genuine)
    assert r.status_code == 423 and int(r.headers["Retry-After"]) > 1700
    clock = server.service.ctx.clock
    try:
        server.service.ctx.clock = lambda: time.time() + 190  # past the 3-minute window
        r = c.post("/v1/subjects/locked/verify", files=genuine)
        assert r.status_code == 423, "the lock lifted with the counting window"
        server.service.ctx.clock = lambda: time.time() + 1801
        r = c.post("/v1/subjects/locked/verify", files=genuine)
        assert r.status_code == 200 and r.json()["match"] is True
    finally:
        server.service.ctx.clock = clock
    view = c.get("/v1/subjects/locked").json()
    assert view["lock"]["lockouts"] >= 1


def test_parallel_impostor_attempts_are_bounded(server: Server, shared_data: Path) -> None:
    c = fresh_tenant(server, "parallel")
    stills_allowed(c)
    consenting_subject(c, "target")
    c.post("/v1/subjects/target/enroll", files=upload(face(shared_data, BIDEN_1)))
    wrong = face(shared_data, ALEX_2)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def attempt() -> None:
        with server.client(c.headers["Authorization"][7:]) as mine:
            r = mine.post("/v1/subjects/target/verify", files=upload(wrong))
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    scored = [r for r in answers if r.status_code == 200]
    assert len(answers) == 16 and all(r.status_code in (200, 423) for r in answers)
    assert len(scored) <= 5, f"{len(scored)} impostor attempts were scored"


def test_non_match_answers_carry_no_score(server: Server, shared_data: Path) -> None:
    c = fresh_tenant(server, "scores")
    stills_allowed(c)
    consenting_subject(c, "scored")
    c.post("/v1/subjects/scored/enroll", files=upload(face(shared_data, BIDEN_1)))
    miss = c.post("/v1/subjects/scored/verify", files=upload(face(shared_data, ALEX_1))).json()
    assert miss["match"] is False and miss.get("score") is None
    hit = c.post("/v1/subjects/scored/verify", files=upload(face(shared_data, BIDEN_2))).json()
    assert hit["match"] is True and hit["score"] >= hit["threshold"]
    assert c.patch("/v1/tenant", json={"reveal_scores": True}).status_code == 200
    miss = c.post("/v1/subjects/scored/verify", files=upload(face(shared_data, ALEX_1))).json()
    assert isinstance(miss["score"], float)


def test_re_enrolment_needs_the_same_face(server: Server, shared_data: Path) -> None:
    c = fresh_tenant(server, "reenrol")
    stills_allowed(c)
    consenting_subject(c, "owner")
    assert (
        c.post("/v1/subjects/owner/enroll", files=upload(face(shared_data, BIDEN_1))).status_code
        == 201
    )
    r = c.post("/v1/subjects/owner/enroll", files=upload(face(shared_data, ALEX_1)))
    assert r.status_code == 409 and r.json()["code"] == "reenrol_mismatch"
    r = c.post("/v1/subjects/owner/enroll", files=upload(face(shared_data, BIDEN_2)))
    assert r.status_code == 201
    enroller = c.post("/v1/keys", json={"roles": ["enroll"]}).json()["key"]
    r = server.client(enroller).post(
        "/v1/subjects/owner/enroll",
        data={"override": "true"},
        files=upload(face(shared_data, ALEX_1)),
    )
    assert r.status_code == 403
    r = c.post(
        "/v1/subjects/owner/enroll",
        data={"override": "true"},
        files=upload(face(shared_data, ALEX_1)),
    )
    assert r.status_code == 201
    actions = [
        (a["action"], a["outcome"]) for a in c.get("/v1/subjects/owner/export").json()["audit"]
    ]
    assert ("enroll", "override") in actions


def test_consent_needs_the_enrol_role(server: Server) -> None:
    c = fresh_tenant(server, "roles")
    consenting_subject(c, "consenting")
    verify_key = c.post("/v1/keys", json={"roles": ["verify"]}).json()["key"]
    v = server.client(verify_key)
    assert v.delete("/v1/subjects/consenting/consents").status_code == 403
    version = c.get("/v1/tenant").json()["consent_text_version"]
    r = v.post("/v1/subjects/consenting/consents", json={"text_version": version, "method": "x"})
    assert r.status_code == 403


def test_search_needs_the_named_subjects_face(server: Server, shared_data: Path) -> None:
    c = fresh_tenant(server, "search")
    stills_allowed(c)
    for sid, photo in (("alex", ALEX_1), ("biden", BIDEN_1)):
        consenting_subject(c, sid)
        c.post(f"/v1/subjects/{sid}/enroll", files=upload(face(shared_data, photo)))
    searcher = server.client(c.post("/v1/keys", json={"roles": ["search"]}).json()["key"])
    # any photo under any consenting subject's name: refused before the gallery is searched
    r = searcher.post(
        "/v1/search", data={"subject_id": "biden"}, files=upload(face(shared_data, ALEX_2))
    )
    assert 400 <= r.status_code < 500 and r.json()["code"] == "probe_not_subject"
    r = searcher.post(
        "/v1/search", data={"subject_id": "biden"}, files=upload(face(shared_data, BIDEN_2))
    )
    assert r.status_code == 200


def test_dot_ids_are_refused_and_exports_stay_private(server: Server, shared_data: Path) -> None:
    c = fresh_tenant(server, "ids")
    for bad in (".", "..", ".hidden"):
        r = c.post("/v1/subjects", json={"subject_id": bad})
        assert r.status_code == 400, bad
    stills_allowed(c)
    for sid, photo in (("first", ALEX_1), ("second", ALEX_2)):
        consenting_subject(c, sid)
        r = c.post(f"/v1/subjects/{sid}/enroll", files=upload(face(shared_data, photo)))
    assert [d["subject_id"] for d in r.json()["duplicates"]] == ["first"]
    export = c.get("/v1/subjects/second/export").text
    assert "first" not in export


def test_capture_links_are_single_use_and_revocable(server: Server) -> None:
    c = fresh_tenant(server, "links")
    # the upload route (an admin's opt-in since the streamed capture) spends an enrolment link
    assert c.patch("/v1/tenant", json={"allow_video_upload": True}).status_code == 200
    consenting_subject(c, "linked")
    link = c.post("/v1/capture-links", json={"subject_id": "linked", "flow": "enroll"}).json()
    page = httpx.Client(base_url=server.url, headers={"X-Capture-Token": link["capture_token"]})
    assert page.get("/v1/capture/info").status_code == 200
    ch = page.post("/v1/capture/challenge").json()
    files = {"video": ("v.webm", b"not a video at all" * 10, "video/webm")}
    r = page.post("/v1/capture/submit", data={"token": ch["token"]}, files=files)
    assert r.status_code == 400
    r = page.post("/v1/capture/challenge")
    assert r.status_code == 409 and r.json()["code"] == "capture_link_used"
    # revoked by its id
    link = c.post("/v1/capture-links", json={"subject_id": "linked", "flow": "verify"}).json()
    page = httpx.Client(base_url=server.url, headers={"X-Capture-Token": link["capture_token"]})
    assert page.get("/v1/capture/info").status_code == 200
    assert c.delete(f"/v1/capture-links/{link['id']}").status_code == 200
    assert page.get("/v1/capture/info").status_code == 401
    # and it dies with the key that issued it
    key = c.post("/v1/keys", json={"roles": ["verify"]}).json()
    link = (
        server.client(key["key"])
        .post("/v1/capture-links", json={"subject_id": "linked", "flow": "verify"})
        .json()
    )
    page = httpx.Client(base_url=server.url, headers={"X-Capture-Token": link["capture_token"]})
    assert page.get("/v1/capture/info").status_code == 200
    assert c.delete(f"/v1/keys/{key['key_id']}").status_code == 200
    assert page.get("/v1/capture/info").status_code == 401


def test_a_capture_links_outcome_reaches_the_relying_party(server: Server) -> None:
    """GET /v1/capture-links/{id}: pending, then the outcome of the capture (here: declined),
    revoked after DELETE; another tenant's link is unknown."""
    c = fresh_tenant(server, "status")
    consenting_subject(c, "outcome")
    link = c.post("/v1/capture-links", json={"subject_id": "outcome", "flow": "verify"}).json()
    assert c.get(f"/v1/capture-links/{link['id']}").json()["status"] == "pending"
    page = httpx.Client(base_url=server.url, headers={"X-Capture-Token": link["capture_token"]})
    assert page.post("/v1/capture/decline").status_code == 200
    status = c.get(f"/v1/capture-links/{link['id']}").json()
    assert status["status"] == "declined" and status["completed_at"] is not None
    assert c.delete(f"/v1/capture-links/{link['id']}").status_code == 200
    assert c.get(f"/v1/capture-links/{link['id']}").json()["status"] == "revoked"
    other = fresh_tenant(server, "other")
    assert other.get(f"/v1/capture-links/{link['id']}").status_code == 404
