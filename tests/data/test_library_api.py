"""The library facade on real faces: ``facegate.compare`` as a script calls it.

Reads ../shared/data/faces (next to the repository); skipped when it is absent, except under
``CI=true``, where missing data is a failure rather than a silent pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import facegate
from facegate import api

pytestmark = pytest.mark.data

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FACES = DATA / "faces"
SAME_A = FACES / "Joseph_Biden" / "face_recognition_biden.jpg"
SAME_B = FACES / "Joseph_Biden" / "face_recognition_biden2.jpg"
OTHER = FACES / "alex_lacamoire" / "face_recognition_img1.jpg"


@pytest.fixture(scope="module", autouse=True)
def photos() -> None:
    missing = [p for p in (SAME_A, SAME_B, OTHER) if not p.is_file()]
    if missing:
        message = f"shared data missing: {', '.join(map(str, missing))}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def verifier() -> facegate.Verifier:
    return api.shared_verifier()  # the instance facegate.compare uses: models load once


def rgb(path: Path) -> np.ndarray:
    """Pixels as a caller would hand them over: EXIF-rotated, RGB, uint8."""
    with Image.open(path) as img:
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def test_path_bytes_and_array_give_the_same_score(verifier: facegate.Verifier) -> None:
    by_path = facegate.compare(SAME_A, str(SAME_B))
    by_bytes = facegate.compare(SAME_A.read_bytes(), SAME_B.read_bytes())
    by_array = facegate.compare(rgb(SAME_A), rgb(SAME_B))
    assert by_bytes.score == pytest.approx(by_path.score, abs=1e-6)
    assert by_array.score == pytest.approx(by_path.score, abs=1e-6)
    assert by_path.a.box_xyxy == pytest.approx(by_array.a.box_xyxy, abs=1e-3)


def test_same_person_matches(verifier: facegate.Verifier) -> None:
    r = facegate.compare(SAME_A, SAME_B)
    assert r.match is True and r.score >= r.threshold
    assert r.operating_point == "fmr_1e-3" and r.fmr_target == pytest.approx(1e-3)
    assert r.embedding_space == verifier.embedding_space and r.embedder == verifier.embedder
    assert r.a.faces_found == 1 and r.a.quality_passed and r.b.quality_passed
    assert {c.name for c in r.a.quality} >= {"sharpness", "brightness"}


def test_different_people_do_not_match(verifier: facegate.Verifier) -> None:
    r = verifier.compare(SAME_A, OTHER, "fmr_1e-4")
    assert r.match is False and r.score < r.threshold and r.operating_point == "fmr_1e-4"


def test_embed_is_a_unit_vector_of_the_space(verifier: facegate.Verifier) -> None:
    e = verifier.embed(SAME_A)
    assert e.space_id == verifier.embedding_space
    assert float(np.linalg.norm(e.vector)) == pytest.approx(1.0, abs=1e-4)


def test_grayscale_array_is_analysed(verifier: facegate.Verifier) -> None:
    gray = np.asarray(Image.fromarray(rgb(SAME_A)).convert("L"))
    assert verifier.analyse(gray).faces_found == 1


def test_no_face_names_the_image(verifier: facegate.Verifier) -> None:
    blank = np.full((200, 200, 3), 128, dtype=np.uint8)
    with pytest.raises(facegate.FaceError) as info:
        facegate.compare(SAME_A, blank)
    assert info.value.code == "no_face" and info.value.details["image"] == "b"


def test_unknown_operating_point(verifier: facegate.Verifier) -> None:
    with pytest.raises(facegate.FacegateError) as info:
        facegate.compare(SAME_A, SAME_B, "fmr_0")
    assert info.value.code == "unknown_operating_point"


def test_shared_verifier_is_built_once_across_threads(verifier: facegate.Verifier) -> None:
    got: list[facegate.Verifier] = []
    threads = [threading.Thread(target=lambda: got.append(api.shared_verifier())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(v is verifier for v in got)


def test_the_documented_one_liner() -> None:
    """The contract scripts depend on, run exactly as a user runs it."""
    code = (
        "import facegate; "
        f"r = facegate.compare({str(SAME_A)!r}, {str(SAME_B)!r}); print(r.match, r.score)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    match, score = proc.stdout.split()
    assert match == "True" and 0.0 < float(score) <= 1.0
