"""The streamed liveness check (issue 15) end to end: a real server, the `facegate stream`
camera simulator in its own process, and raw WebSocket clients for the protocol's errors.

Done when: a real video whose actions match, streamed with the colours rendered onto the face,
is live; without the rendering it is not; held back 2.5 s it is not; a fresh tenant refuses
whole-video uploads."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from tests.service.conftest import Server, consenting_subject, start_server, stop_server
from websockets.sync.client import ClientConnection, connect

VIDEO = "videos/liveportrait_d18.mp4"  # opens its mouth at ~2 s and ~3.5 s (labels.csv)


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory) -> Iterator[Server]:
    s = start_server(engine, tmp_path_factory.mktemp("stream"))
    consenting_subject(s.client(), "streamer")
    yield s
    stop_server(s)


def stream(server: Server, shared_data: Path, *flags: str, key: str | None = None) -> dict:
    """`facegate stream` in its own process (as an integrator runs it); its JSON verdict."""
    cmd = [sys.executable, "-m", "facegate.cli.main", "stream", str(shared_data / VIDEO),
           "--server", server.url, "--key", key or server.admin_key, "--subject", "streamer",
           "--flow", "verify", "--actions", "open_mouth", *flags]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    out = json.loads(done.stdout)
    out["exit"] = done.returncode
    return out


def codes(verdict: dict) -> set[str]:
    return {r["code"] for r in verdict.get("reasons", [])}


def test_streamed_video_with_rendered_flash_is_live(server: Server, shared_data: Path) -> None:
    v = stream(server, shared_data, "--render-flash")
    assert v["exit"] == 0 and v["live"] is True, codes(v)
    assert v["session_id"] and v["stream"]["steps_covered"] == v["stream"]["steps"]
    cues = {c["name"]: c for c in v["cues"]}
    assert cues["flash_lag_ms"]["score"] <= 700
    # the session verifies like an uploaded video's: once, for its subject and purpose
    c = server.client()
    r = c.post("/v1/subjects/streamer/enroll", data={"liveness_session": v["session_id"]})
    assert r.status_code == 409  # made for verify, not enrol
    print("stream, bona fide:", json.dumps({k: v[k] for k in ("stream", "timings_ms", "client")}))


def test_without_the_flash_it_is_not_live(server: Server, shared_data: Path) -> None:
    v = stream(server, shared_data)
    assert v["exit"] == 0 and v["live"] is False and v["session_id"] is None
    assert "cue_flash_correlation" in codes(v)


def test_held_back_frames_are_not_live(server: Server, shared_data: Path) -> None:
    v = stream(server, shared_data, "--render-flash", "--delay-ms", "2500")
    assert v["exit"] == 0 and v["live"] is False
    assert codes(v) & {"stream_late", "cue_flash_correlation"}, codes(v)


def test_a_fresh_tenant_refuses_whole_videos_and_chosen_actions(
    server: Server, shared_data: Path
) -> None:
    _, key = server.service.create_tenant(f"fresh-{time.time_ns()}")
    c = server.client(key)
    consenting_subject(c, "streamer")
    assert c.get("/v1/tenant").json()["allow_video_upload"] is False
    files = {"video": ("v.mp4", (shared_data / VIDEO).read_bytes(), "video/mp4")}
    ch = c.post("/v1/liveness/challenges", json={"subject_id": "streamer", "purpose": "verify"})
    r = c.post("/v1/liveness/sessions", data={"token": ch.json()["token"]}, files=files)
    assert r.status_code == 403 and r.json()["code"] == "video_upload_disabled"
    assert r.headers["content-type"].startswith("application/problem+json")
    link = c.post("/v1/capture-links", json={"subject_id": "streamer", "flow": "verify"}).json()
    page = {"X-Capture-Token": link["capture_token"]}
    r = httpx.post(f"{server.url}/v1/capture/submit", headers=page, data={"token": "x"},
                   files=files)  # fmt: skip
    assert r.status_code == 403 and r.json()["code"] == "video_upload_disabled"
    # the stream is open to it, but the server chooses the actions
    with connect(server.url.replace("http", "ws") + "/v1/liveness/stream") as ws:
        ws.send(json.dumps({"type": "start", "key": key, "subject_id": "streamer",
                            "purpose": "verify", "actions": ["blink"]}))  # fmt: skip
        assert json.loads(ws.recv())["code"] == "chosen_actions_not_allowed"
    # an admin may allow uploads again (audited)
    r = c.patch("/v1/tenant", json={"allow_video_upload": True})
    assert r.status_code == 200 and r.json()["allow_video_upload"] is True


@contextmanager
def open_session(server: Server, **start) -> Iterator[ClientConnection]:
    with connect(server.url.replace("http", "ws") + "/v1/liveness/stream") as ws:
        first = {"type": "start", "subject_id": "prober", "purpose": "verify", **start}
        ws.send(json.dumps(first))
        yield ws


def test_protocol_errors_end_the_session_with_a_reason(server: Server) -> None:
    consenting_subject(server.client(), "prober")  # its own: each failed session is counted
    with open_session(server, key="fg_nope_nope") as ws:
        msg = json.loads(ws.recv())
        assert (msg["type"], msg["code"], msg["status"]) == ("error", "unauthenticated", 401)
    for frames, code in (
        ([struct.pack("<d", 1.0) + b"not a jpeg"], "frame_malformed"),
        ([b"ab"], "frame_malformed"),
        ([struct.pack("<d", 100.0) + b"x" * 300_000], "frame_too_large"),
    ):
        with open_session(server, key=server.admin_key) as ws:
            assert json.loads(ws.recv())["type"] == "ready"
            assert json.loads(ws.recv())["kind"] == "settle"
            for f in frames:
                ws.send(f)
            verdict = next(m for m in map(json.loads, ws) if m["type"] == "verdict")
            assert verdict["live"] is False and code in codes(verdict), verdict
    # silence: the server ends it on its own (idle timeout), not live
    with open_session(server, key=server.admin_key) as ws:
        t = time.monotonic()
        verdict = next(m for m in map(json.loads, ws) if m["type"] == "verdict")
        assert verdict["live"] is False and codes(verdict) & {"stream_silent", "stream_late"}
        assert time.monotonic() - t < 8
