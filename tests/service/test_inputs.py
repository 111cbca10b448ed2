"""Hostile inputs get typed 4xx answers: a JPEG with a bogus EXIF segment (API and CLI), a
chunked body over the limit, and a recording whose header states its time base as its frame
rate (judged by its timestamps, not refused as 33 times too long)."""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from tests.service.conftest import consenting_subject, face, start_server, stop_server

from facegate.cli.main import main as cli_main
from facegate.liveness.video import read_frames

BIDEN_1 = "Joseph_Biden/face_recognition_biden.jpg"
BIDEN_2 = "Joseph_Biden/face_recognition_biden2.jpg"


def with_bogus_exif(jpeg: bytes) -> bytes:
    """The photo with an APP1 ``Exif`` segment right after SOI whose payload is no TIFF header."""
    payload = b"Exif\x00\x00" + b"this is not a TIFF header, just text" * 3
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + segment + jpeg[2:]


def test_bogus_exif_is_a_typed_400(server, shared_data: Path) -> None:
    c = server.client()
    consenting_subject(c, "exif")
    bad = with_bogus_exif(face(shared_data, BIDEN_1))
    r = c.post("/v1/subjects/exif/enroll", files={"image": ("f.jpg", bad, "image/jpeg")})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "bad_exif"


def test_bogus_exif_through_compare(shared_data: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(with_bogus_exif(face(shared_data, BIDEN_1)))
    code = cli_main(["compare", str(bad), str(shared_data / "faces" / BIDEN_2)])
    out = json.loads(capsys.readouterr().out)
    assert (code, out["error"]) == (2, "bad_exif")


def test_chunked_body_over_the_limit_is_413(engine, tmp_path: Path) -> None:
    """No Content-Length to refuse up front: counted as it arrives, answered 413 problem+json
    (FastAPI's own answer to the cut-short form was a plain 400)."""
    s = start_server(engine, tmp_path, max_body=1 << 20, liveness=False)

    def chunks() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="f.jpg"\r\n\r\n'
        for _ in range(40):
            yield b"\xff" * 65536
        yield b"\r\n--b--\r\n"

    try:
        with s.client() as c:
            r = c.post(
                "/v1/subjects/nobody/verify",
                content=chunks(),
                headers={"content-type": "multipart/form-data; boundary=b"},
            )
            assert r.status_code == 413, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["code"] == "body_too_large"
            assert c.get("/healthz").status_code == 200
    finally:
        stop_server(s)


class TimeBaseAsRate:
    """A real capture that reports what OpenCV reports for a browser's WebM: its 1 ms time base
    as 1000 fps, and the duration in those units as the frame count."""

    def __init__(self, real: cv2.VideoCapture) -> None:
        self.real = real
        fps, count = real.get(cv2.CAP_PROP_FPS), real.get(cv2.CAP_PROP_FRAME_COUNT)
        self.seconds = count / fps

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FPS:
            return 1000.0
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return self.seconds * 1000.0
        return float(self.real.get(prop))

    def __getattr__(self, name: str):
        return getattr(self.real, name)


def test_a_header_rate_of_1000_fps_is_judged_by_timestamps(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 7.2 s clip whose header says 1000 fps (and 7200 frames): read whole, frames at their
    real times. It used to be refused as ``video_too_long``: 240 s, the count over a rate clamped
    to 30 fps (the issue's 3 s recording read as 100 s the same way)."""
    real_capture = cv2.VideoCapture
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: TimeBaseAsRate(real_capture(*a)))
    data = (shared_data / "videos" / "liveportrait_d18.mp4").read_bytes()
    frames = list(read_frames(data))
    assert frames, "no frames"
    span_s = (frames[-1].t_ms - frames[0].t_ms) / 1000
    assert 1.0 < span_s < 15.0
    gaps = [b.t_ms - a.t_ms for a, b in itertools.pairwise(frames)]
    assert min(gaps) >= 0.9 * 1000 / 15 - 1e-6  # sampled by time at <= 15 fps
