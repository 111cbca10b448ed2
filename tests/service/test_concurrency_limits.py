"""The engine off the event loop, the per-worker caps, and authentication before the body.

The server runs in this process (uvicorn in a thread), so this process's memory is the worker's:
the anonymous-upload test reads its peak resident size around the uploads.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from tests.service import conftest
from tests.service.conftest import consenting_subject, face, start_server, stop_server

from facegate.errors import UnavailableError
from facegate.settings import Settings
from facegate.web.deps import Analyses

BIDEN_1 = "Joseph_Biden/face_recognition_biden.jpg"
MIB = 1 << 20


def start_with(engine, tmp: Path, monkeypatch: pytest.MonkeyPatch, **fields: object):
    """``start_server`` with extra ``Settings`` fields (the caps under test)."""
    monkeypatch.setattr(conftest, "Settings", functools.partial(Settings, **fields))
    return start_server(engine, tmp, liveness=False)


@pytest.fixture(scope="module")
def busy_server(engine, shared_data, tmp_path_factory) -> Iterator[conftest.Server]:
    s = start_server(engine, tmp_path_factory.mktemp("busy"), liveness=False)
    consenting_subject(s.client(), "load")
    r = s.client().post(
        "/v1/subjects/load/enroll",
        files={"image": ("f.jpg", face(shared_data, BIDEN_1))},
    )
    assert r.status_code == 201, r.text
    yield s
    stop_server(s)


def test_healthz_answers_while_four_verifies_run(busy_server, shared_data: Path) -> None:
    """4 verifies in flight the whole time (one analysing, three waiting for the slot): /healthz
    still answers within 200 ms every time (it took seconds when the engine ran on the loop)."""
    photo = face(shared_data, BIDEN_1)
    stop = threading.Event()
    done: list[int] = []

    def verifier() -> None:
        with busy_server.client() as c:
            while not stop.is_set():
                r = c.post("/v1/subjects/load/verify", files={"image": ("f.jpg", photo)})
                done.append(r.status_code)

    threads = [threading.Thread(target=verifier) for _ in range(4)]
    for t in threads:
        t.start()
    worst = 0.0
    try:
        time.sleep(0.5)
        with httpx.Client(base_url=busy_server.url, timeout=10) as probe:
            for _ in range(30):
                t0 = time.perf_counter()
                assert probe.get("/healthz").status_code == 200
                worst = max(worst, time.perf_counter() - t0)
                time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert done and set(done) == {200}, set(done)
    assert worst < 0.2, f"/healthz took {worst * 1000:.0f} ms under 4 verifies"


def test_uploads_beyond_the_cap_get_busy(engine, tmp_path, monkeypatch, shared_data) -> None:
    """With one upload slot, an upload whose body is still arriving holds it: a second one gets
    503 ``busy`` problem+json with Retry-After before its body is read; then it is free again."""
    s = start_with(engine, tmp_path, monkeypatch, max_concurrent_uploads=1)
    release = threading.Event()
    first: list[httpx.Response] = []

    def slow_body() -> Iterator[bytes]:  # chunked: the route waits for the rest
        yield b'--b\r\nContent-Disposition: form-data; name="liveness_session"\r\n\r\n'
        release.wait(20)
        yield b"nope\r\n--b--\r\n"

    def hold() -> None:
        with s.client() as c:
            first.append(
                c.post(
                    "/v1/subjects/nobody/verify",
                    content=slow_body(),
                    headers={"content-type": "multipart/form-data; boundary=b"},
                )
            )

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        time.sleep(0.5)
        photo = face(shared_data, BIDEN_1)
        with s.client() as c:
            r = c.post("/v1/subjects/nobody/verify", files={"image": ("f.jpg", photo)})
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["code"] == "busy" and int(r.headers["Retry-After"]) >= 1
            assert c.get("/healthz").status_code == 200  # no body: never capped
        release.set()
        holder.join(timeout=30)
        assert first and first[0].status_code != 503
        with s.client() as c:
            r = c.post("/v1/subjects/nobody/verify", files={"image": ("f.jpg", photo)})
            assert r.status_code == 404  # the slot is back
    finally:
        release.set()
        stop_server(s)


def test_analyses_wait_for_a_slot_then_get_busy() -> None:
    """At most ``capacity`` analyses run at once; one that cannot get a slot within the wait is
    ``busy`` (503) with a retry time, and a slot that frees up is taken by the next one."""
    analyses = Analyses(1, max_wait_s=0.2)
    gate = threading.Event()
    running: list[int] = []

    def hold() -> int:
        running.append(1)
        gate.wait(5)
        return 1

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(analyses.run, hold)
            await anyio.sleep(0.05)
            with pytest.raises(UnavailableError) as err:
                await analyses.run(lambda: 2)
            assert err.value.code == "busy" and err.value.details["retry_after_s"] >= 1
            gate.set()
        assert await analyses.run(lambda: 3) == 3

    anyio.run(main)
    assert running == [1]


def _peak_rss_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_anonymous_uploads_are_refused_before_the_body(busy_server) -> None:
    """8 anonymous 30 MB uploads get 401 and the worker's peak memory grows by a few MB at most
    (FastAPI used to read each whole form before the key was checked: ~30 MB apiece)."""
    if not _peak_rss_reset():
        pytest.skip("/proc/self/clear_refs is not writable here: no peak-RSS reading")
    body = b'--b\r\nContent-Disposition: form-data; name="image"; filename="f.jpg"\r\n\r\n'
    body += b"\xff" * (30 * MIB) + b"\r\n--b--\r\n"
    headers = {"content-type": "multipart/form-data; boundary=b", "content-length": str(len(body))}

    def pieces() -> Iterator[bytes]:  # 64 KiB at a time: the client itself holds no copies
        for i in range(0, len(body), 1 << 16):
            yield body[i : i + (1 << 16)]

    with httpx.Client(base_url=busy_server.url, timeout=60) as anon:
        warm = {**headers, "content-length": "1"}
        assert anon.post("/v1/subjects/load/verify", content=b"x", headers=warm).status_code == 401
        _peak_rss_reset()
        before = _kib("VmRSS")
        for i in range(8):
            key = {"Authorization": "Bearer fg_nope_nope"} if i % 2 else {}
            r = anon.post("/v1/subjects/load/verify", content=pieces(), headers={**headers, **key})
            assert r.status_code == 401, r.text
            assert r.json()["code"] == "unauthenticated"
        grown_mib = (_kib("VmHWM") - before) / 1024
    assert grown_mib < 8, f"the worker's peak memory grew {grown_mib:.1f} MB"


def test_readyz_is_503_while_the_database_fails(busy_server, monkeypatch) -> None:
    """A store that raises (a lost connection, a restarting database) makes /readyz answer 503
    problem+json, while /healthz, a process check, stays 200; ready again once it answers."""

    def down() -> int:
        raise OSError("connection refused")

    monkeypatch.setattr(busy_server.service.ctx.store, "last_log_seq", down)
    with httpx.Client(base_url=busy_server.url, timeout=10) as c:
        r = c.get("/readyz")
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "database_unavailable"
        assert c.get("/healthz").status_code == 200
        monkeypatch.undo()
        assert c.get("/readyz").status_code == 200
