"""Seeded fuzzing of the image and video decoders with mutated real files: every input is either
decoded or refused with a typed ``InputError`` (a 4xx), never an untyped exception (a 500).

Mutations: bit flips, random byte runs, truncation, a deleted or duplicated span, and inserted
JPEG segments. Bounded: a few hundred inputs of small files, well under 20 s on 2 cores.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from tests.helpers import require_shared_data

from facegate.engine.decode import decode_image
from facegate.errors import InputError
from facegate.liveness.video import VideoLimits, read_frames

SEED = 16
IMAGE_MUTANTS = 300
VIDEO_MUTANTS = 120


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random structural or byte-level damage to ``data``."""
    b = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:  # flip a few bits, headers favoured
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(min(len(b), 2048)) if rng.random() < 0.6 else rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # overwrite a run with random bytes
        i = rng.randrange(len(b))
        run = rng.randint(1, 64)
        b[i : i + run] = bytes(rng.getrandbits(8) for _ in range(run))
    elif kind == 2:  # truncate
        del b[rng.randrange(1, len(b)) :]
    elif kind == 3:  # delete a span
        i = rng.randrange(len(b))
        del b[i : i + rng.randint(1, 512)]
    elif kind == 4:  # duplicate a span
        i = rng.randrange(len(b))
        b[i:i] = b[i : i + rng.randint(1, 512)]
    else:  # insert a segment with a random marker, length and payload after the first 2 bytes
        payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 80)))
        marker = bytes([0xFF, rng.choice([0xE1, 0xE2, 0xED, 0xFE, 0xDB, 0xC4, rng.getrandbits(8)])])
        length = rng.choice([len(payload) + 2, 0, 1, 0xFFFF, rng.getrandbits(16)])
        b[2:2] = marker + struct.pack(">H", length) + payload
    return bytes(b)


def assert_typed(decode: Callable[[bytes], object], inputs: list[bytes]) -> dict[str, int]:
    """Decode every input; count outcomes; fail on the first untyped exception."""
    outcomes: dict[str, int] = {}
    for i, data in enumerate(inputs):
        try:
            decode(data)
            key = "decoded"
        except InputError as exc:  # TooLargeError included: all 4xx
            assert 400 <= exc.status < 500
            key = exc.code
        except Exception as exc:  # pragma: no cover - the failure being tested for
            pytest.fail(f"input {i}: untyped {type(exc).__name__}: {exc}")
        outcomes[key] = outcomes.get(key, 0) + 1
    return outcomes


def test_mutated_images_are_decoded_or_refused_with_a_code() -> None:
    faces = require_shared_data() / "faces"
    rng = random.Random(SEED)
    sources = [
        (faces / "Joseph_Biden" / "Joseph_Biden_0001.jpg").read_bytes(),
        (faces / "Joseph_Biden" / "face_recognition_biden.jpg").read_bytes(),
    ]
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(sources[0], np.uint8), 1), cv2.COLOR_BGR2RGB)
    for ext in (".png", ".webp", ".bmp"):  # the other formats we accept, from the same face
        ok, enc = cv2.imencode(ext, rgb)
        assert ok
        sources.append(enc.tobytes())
    inputs = [mutate(rng.choice(sources), rng) for _ in range(IMAGE_MUTANTS)]
    outcomes = assert_typed(decode_image, inputs)
    assert len(outcomes) > 2, outcomes  # the mutations do reach several refusal paths


def small_clip(tmp: Path, ext: str, fourcc: str) -> bytes:
    """The first 20 frames of a real recording, at 160x160, written with OpenCV."""
    src = cv2.VideoCapture(str(require_shared_data() / "videos" / "liveportrait_d18.mp4"))
    path = tmp / f"clip{ext}"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 15.0, (160, 160))
    assert out.isOpened(), f"OpenCV cannot write {fourcc}"
    for _ in range(20):
        ok, bgr = src.read()
        assert ok
        out.write(cv2.resize(bgr, (160, 160)))
    out.release()
    src.release()
    return path.read_bytes()


def test_mutated_videos_are_decoded_or_refused_with_a_code(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    sources = [small_clip(tmp_path, ".avi", "MJPG"), small_clip(tmp_path, ".mp4", "mp4v")]
    limits = VideoLimits(max_seconds=5.0, max_decoded_frames=200)
    inputs = [mutate(rng.choice(sources), rng) for _ in range(VIDEO_MUTANTS)]
    outcomes = assert_typed(lambda data: list(read_frames(data, limits)), inputs)
    assert outcomes.get("decoded", 0) > 0 and len(outcomes) > 1, outcomes
