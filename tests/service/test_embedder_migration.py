"""A change of default embedder never silently strands enrolled subjects: templates made by
MobileFaceNet are scored with the fused embedder's MobileFaceNet part (and moved to the new space
on a match); templates the new embedder cannot score answer ``re_enrolment_required``."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegate.engine.pipeline import FaceEngine
from facegate.errors import ConflictError
from facegate.protection.crypto import load_keyring
from facegate.service import Caller, FaceService
from facegate.storage.sqlite import SQLiteStore

BIDEN_1 = "Joseph_Biden/face_recognition_biden.jpg"
BIDEN_2 = "Joseph_Biden/face_recognition_biden2.jpg"
ALEX_1 = "alex_lacamoire/face_recognition_img1.jpg"


def photo(shared_data: Path, rel: str) -> bytes:
    return (shared_data / "faces" / rel).read_bytes()


def test_mobilefacenet_templates_move_to_the_fused_space(
    tmp_path: Path, shared_data: Path, engine
) -> None:
    if engine.embedder.name != "fused":
        pytest.skip("the default embedder is not the fused one")
    keys = load_keyring(tmp_path / "master.keys")
    old = FaceService(
        SQLiteStore(tmp_path / "f.sqlite3"), keys, FaceEngine(embedder="mobilefacenet")
    )
    tenant, _ = old.create_tenant("t", {"require_liveness": False})
    caller = Caller(tenant.id, "test", frozenset({"enroll", "verify", "admin"}))
    for sid in ("biden", "stranger"):
        old.create_subject(caller, sid, None)
        old.grant_consent(caller, sid, "face_verification", "1", "test")
    old.enroll(caller, "biden", old.probe_from_image(photo(shared_data, BIDEN_1)), "photo")

    new = FaceService(SQLiteStore(tmp_path / "f.sqlite3"), keys, engine)
    miss = new.verify(caller, "biden", new.probe_from_image(photo(shared_data, ALEX_1)))
    assert miss["match"] is False and miss["migrated_from"].startswith("mobilefacenet")
    hit = new.verify(caller, "biden", new.probe_from_image(photo(shared_data, BIDEN_2)))
    assert hit["match"] is True and hit["migrated_from"].startswith("mobilefacenet")
    spaces = {t.space_id for t in new.store.templates_of(tenant.id, "biden")}
    assert spaces == {old.engine.space_id, engine.space_id}
    # from now on the subject is verified in the new space directly
    again = new.verify(caller, "biden", new.probe_from_image(photo(shared_data, BIDEN_2)))
    assert again["match"] is True and "migrated_from" not in again


def test_templates_the_new_model_cannot_score_are_flagged(
    tmp_path: Path, shared_data: Path, engine
) -> None:
    keys = load_keyring(tmp_path / "master.keys")
    old = FaceService(SQLiteStore(tmp_path / "d.sqlite3"), keys, FaceEngine(embedder="dlib"))
    tenant, _ = old.create_tenant("t", {"require_liveness": False})
    caller = Caller(tenant.id, "test", frozenset({"enroll", "verify", "admin"}))
    old.create_subject(caller, "biden", None)
    old.grant_consent(caller, "biden", "face_verification", "1", "test")
    old.enroll(caller, "biden", old.probe_from_image(photo(shared_data, BIDEN_1)), "photo")
    new = FaceService(SQLiteStore(tmp_path / "d.sqlite3"), keys, engine)
    with pytest.raises(ConflictError) as info:
        new.verify(caller, "biden", new.probe_from_image(photo(shared_data, BIDEN_2)))
    assert info.value.code == "re_enrolment_required"
    assert info.value.details["template_spaces"] == [old.engine.space_id]
