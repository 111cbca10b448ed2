"""The engine on real faces from ../shared/data/faces: matches, non-matches and refusals.

Pairs come from the 'eval' identities (thresholds were calibrated on the 'tune' ones), sampled
with a fixed seed so the test is repeatable; the bounds are rates, not single files.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from tests.conftest import encode, load_rgb

from facegate.engine.compare import decide, operating_point
from facegate.engine.decode import decode_image
from facegate.engine.pipeline import BlazeFacePair
from facegate.errors import FaceError
from facegate.eval.faces import identity_split

pytestmark = pytest.mark.data
N_IDENTITIES = 30


@pytest.fixture(scope="module")
def eval_people(face_rows: list[dict[str, str]]) -> dict[str, list[str]]:
    people: dict[str, list[str]] = defaultdict(list)
    for row in face_rows:
        if identity_split(row["identity"]) == "eval":
            people[row["identity"]].append(row["file"])
    names = sorted(n for n, files in people.items() if len(files) >= 2)
    picked = random.Random(7).sample(names, N_IDENTITIES)
    return {n: people[n][:3] for n in picked}


@pytest.fixture(scope="module")
def embeddings(engine, shared_data: Path, eval_people: dict[str, list[str]]):
    out = {}
    for files in eval_people.values():
        for f in files:
            try:
                out[f] = engine.analyse(
                    (shared_data / f).read_bytes(), multiple="largest"
                ).embedding
            except FaceError:
                out[f] = None
    return out


def test_failure_to_enrol_is_low(embeddings) -> None:
    failed = sum(v is None for v in embeddings.values())
    assert failed / len(embeddings) <= 0.05


def test_same_person_matches(engine, embeddings, eval_people) -> None:
    point = operating_point(engine.space_id, "fmr_1e-3")
    results = [
        decide(embeddings[a], embeddings[b], point).match
        for files in eval_people.values()
        for a, b in itertools.combinations(files, 2)
        if embeddings[a] is not None and embeddings[b] is not None
    ]
    assert len(results) >= 40
    assert np.mean(results) >= 0.85, f"genuine match rate {np.mean(results):.3f}"


def test_different_people_do_not_match(engine, embeddings, eval_people) -> None:
    point = operating_point(engine.space_id, "fmr_1e-3")
    firsts = [files[0] for files in eval_people.values() if embeddings[files[0]] is not None]
    results = [
        decide(embeddings[a], embeddings[b], point).match
        for a, b in itertools.combinations(firsts, 2)
    ]
    assert len(results) >= 300
    assert np.mean(results) <= 0.01, f"false match rate {np.mean(results):.4f}"


def _refusal(engine, data: bytes, **kwargs) -> str:
    with pytest.raises(FaceError) as info:
        engine.analyse(data, **kwargs)
    return info.value.code


PHOTO_A = "faces/Joseph_Biden/face_recognition_biden.jpg"
PHOTO_B = "faces/alex_lacamoire/face_recognition_img1.jpg"


def test_photo_without_a_face(engine, shared_data: Path) -> None:
    # A real photograph's background: the top strip of a portrait, above the head.
    rgb = load_rgb(shared_data / "faces/Abel_Pacheco/Abel_Pacheco_0001.jpg")
    strip = cv2.resize(rgb[:45, :], (400, 72 * 400 // 250))
    assert _refusal(engine, encode(strip)) == "no_face"


def test_uniform_image_has_no_face(engine) -> None:
    rgb = np.full((240, 320, 3), (90, 140, 200), np.uint8)
    assert _refusal(engine, encode(rgb)) == "no_face"


def _two_people(shared_data: Path) -> bytes:
    a = cv2.resize(load_rgb(shared_data / PHOTO_A), (300, 300))
    b = cv2.resize(load_rgb(shared_data / PHOTO_B), (300, 300))
    return encode(np.hstack([a, b]))


def test_several_faces_are_refused(engine, shared_data: Path) -> None:
    assert _refusal(engine, _two_people(shared_data)) == "multiple_faces"


def test_several_faces_largest_when_asked(engine, shared_data: Path) -> None:
    res = engine.analyse(_two_people(shared_data), multiple="largest")
    assert res.faces_found == 2


def test_blurred_face_is_refused(engine, shared_data: Path) -> None:
    rgb = load_rgb(shared_data / PHOTO_A)
    assert engine.analyse(encode(rgb)).quality_passed
    blurred = cv2.GaussianBlur(rgb, (0, 0), sigmaX=rgb.shape[1] / 60)
    assert _refusal(engine, encode(blurred)) == "blurred"


def test_dark_and_overexposed_faces_are_refused(engine, shared_data: Path) -> None:
    rgb = load_rgb(shared_data / PHOTO_A).astype(np.float32)
    dark = (rgb * 0.12).astype(np.uint8)
    bright = np.clip(rgb * 2.2 + 90, 0, 255).astype(np.uint8)
    assert _refusal(engine, encode(dark)) == "too_dark"
    assert _refusal(engine, encode(bright)) == "overexposed"


def test_small_face_is_refused(engine, shared_data: Path) -> None:
    data = (shared_data / PHOTO_A).read_bytes()
    res = engine.analyse(data)
    x0, y0, x1, y1 = (round(v) for v in res.box.xyxy)
    pad = round(res.box.width)
    rgb = load_rgb(shared_data / PHOTO_A)
    face = rgb[max(y0 - pad, 0) : y1 + pad, max(x0 - pad, 0) : x1 + pad]
    scale = 14.0 / res.landmarks.interocular_px  # eyes 14 px apart: too small to verify
    small = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 120, np.uint8)
    canvas[200 : 200 + small.shape[0], 300 : 300 + small.shape[1]] = small
    code = _refusal(engine, encode(canvas))
    assert code in {"face_too_small", "no_face"}


def test_quality_values_are_reported(engine, shared_data: Path) -> None:
    res = engine.analyse((shared_data / PHOTO_A).read_bytes())
    q = res.quality_dict()
    assert {"interocular_px", "sharpness", "brightness", "yaw_deg", "pitch_deg"} <= set(q)
    assert all("value" in v and "passed" in v for v in q.values())


def _face_count(pair: BlazeFacePair, rgb: np.ndarray) -> int:
    boxes = sorted(pair.detect(rgb), key=lambda b: -b.area)
    if not boxes:
        return 0
    return 1 + sum(b.width >= 0.5 * boxes[0].width for b in boxes[1:])


def test_full_range_model_only_when_needed_counts_faces_as_both(
    shared_data: Path, face_rows: list[dict[str, str]]
) -> None:
    """The full-range BlazeFace model is skipped where the short-range one sees a large face;
    face counts must stay those of running both (bench/bench_detect.py measures all photos)."""
    rows = random.Random(5).sample(face_rows, 120)
    rgbs = [decode_image((shared_data / r["file"]).read_bytes()) for r in rows]
    for k in range(0, 40, 2):  # two-person pictures, the second face 0.55-1.0 of the first
        a = cv2.resize(rgbs[k], (300, 300))
        side = int(300 * (0.55 + 0.45 * k / 40))
        b = np.full((300, 300, 3), 110, np.uint8)
        b[:side, :side] = cv2.resize(rgbs[k + 1], (side, side))
        rgbs.append(np.hstack([a, b]))
    lazy, both = BlazeFacePair(), BlazeFacePair(always_full=True)
    counts = [(_face_count(lazy, rgb), _face_count(both, rgb)) for rgb in rgbs]
    assert all(x == y for x, y in counts), [i for i, (x, y) in enumerate(counts) if x != y]
    assert sum(y >= 2 for _, y in counts[120:]) >= 18  # the two-person pictures are seen as such


@pytest.mark.parametrize("multiple", ["reject", "largest"])
def test_batch_path_gives_what_one_image_at_a_time_gives(
    engine, shared_data: Path, face_rows: list[dict[str, str]], multiple: str
) -> None:
    """analyse_many detects the next photo on a worker thread while this one is embedded: every
    result (vector bits, box, quality, face count) and every refusal must be the sequential
    path's, in order, with refusals (no face, several faces, quality) among the photos."""
    rows = random.Random(9).sample(face_rows, 40)
    images = [(shared_data / r["file"]).read_bytes() for r in rows]
    images[3:3] = [encode(np.full((240, 320, 3), 90, np.uint8)), _two_people(shared_data)]
    blurred = cv2.GaussianBlur(load_rgb(shared_data / PHOTO_A), (0, 0), 6)
    images.append(encode(blurred))
    one_by_one = []
    for data in images:
        try:
            one_by_one.append(engine.analyse(data, multiple=multiple))
        except FaceError as exc:
            one_by_one.append(exc)
    batch = list(engine.analyse_many(iter(images), multiple=multiple))
    assert len(batch) == len(images)
    refused = 0
    for a, b in zip(one_by_one, batch):
        if isinstance(a, FaceError):
            assert isinstance(b, FaceError) and (b.code, b.details) == (a.code, a.details)
            refused += 1
            continue
        assert not isinstance(b, Exception)
        assert np.array_equal(a.embedding.vector, b.embedding.vector)
        assert a.embedding.space_id == b.embedding.space_id
        assert (a.box.xyxy, a.faces_found, a.quality) == (b.box.xyxy, b.faces_found, b.quality)
    assert refused >= (3 if multiple == "reject" else 2)


def test_batch_path_stops_cleanly_when_the_caller_stops(engine, shared_data: Path) -> None:
    data = (shared_data / PHOTO_A).read_bytes()
    results = engine.analyse_many(data for _ in range(50))
    assert not isinstance(next(results), Exception)
    results.close()  # the worker finishes the photo it holds and the pool is gone
    assert not any(t.name.startswith("facegate-prepare") for t in threading.enumerate())


def test_mobilefacenet_one_op_prelu_gives_the_same_bits(
    shared_data: Path, face_rows: list[dict[str, str]]
) -> None:
    """engine/tflite_graph.fuse_prelu changes speed only: on real chips (and their mirror
    images, the batch the model runs) the outputs are the five-op file's, bit for bit."""
    from facegate.engine.embed import MobileFaceNetEmbedder
    from facegate.engine.pipeline import FaceEngine

    engine = FaceEngine(embedder="mobilefacenet")
    fast = engine.embedder
    assert isinstance(fast, MobileFaceNetEmbedder)
    reference = MobileFaceNetEmbedder(fast_prelu=False)
    compared = 0
    for row in random.Random(4).sample(face_rows, 60):
        rgb = decode_image((shared_data / row["file"]).read_bytes())
        try:
            res = engine.analyse(rgb, multiple="largest", enforce_quality=False)
        except FaceError:
            continue
        chip = fast.align(rgb, res.box, res.landmarks)
        raw = fast.embed_chips_raw(chip, chip[:, ::-1])
        assert np.array_equal(raw, reference.embed_chips_raw(chip, chip[:, ::-1]))
        assert np.array_equal(res.embedding.vector, reference.embed_chip(chip))
        compared += 1
    assert compared >= 50
