"""GET /metrics answers Prometheus text with facegate_ metrics: requests by route template and
status, the service's events, the engine's stage times (photos and videos), the analysis line
and the in-memory index's size; no subject id or key appears in it. With
PROMETHEUS_MULTIPROC_DIR set, several worker processes' counts add up in one scrape."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.service.conftest import Server, consenting_subject, face

BIDEN_1 = "Joseph_Biden/face_recognition_biden.jpg"
ALEX_1 = "alex_lacamoire/face_recognition_img1.jpg"
VIDEO = "videos/liveportrait_d18.mp4"
REPO = Path(__file__).resolve().parents[2]


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample (labels in any order), or None when it is not there."""
    for line in text.splitlines():
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if found == labels:
            return float(m.group(3))
    return None


def test_metrics_count_requests_and_events(server: Server, shared_data: Path) -> None:
    c = server.client()
    consenting_subject(c, "metered-subject")
    c.post(
        "/v1/subjects/metered-subject/enroll",
        files={"image": ("f.jpg", face(shared_data, BIDEN_1))},
    )
    c.post(
        "/v1/subjects/metered-subject/verify", files={"image": ("f.jpg", face(shared_data, ALEX_1))}
    )
    assert c.get("/v1/subjects/nobody-here").status_code == 404
    r = server.client("").get("/metrics")  # no key needed: bind the service to a private address
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'facegate_requests_total{method="GET",route="/v1/tenant",status="200"}' in text
    assert 'route="/v1/subjects/{subject_id}",status="404"' in text
    assert 'facegate_events_total{action="verify",outcome="no_match"}' in text
    assert "facegate_request_duration_seconds_bucket" in text
    assert "metered-subject" not in text and server.admin_key not in text


def test_engine_stages_analysis_line_and_index_size(server: Server, shared_data: Path) -> None:
    c = server.client()
    consenting_subject(c, "staged-subject")
    space = server.service.ctx.space_id
    before = sample(server.client("").get("/metrics").text, "facegate_index_templates", space=space)
    r = c.post(
        "/v1/subjects/staged-subject/enroll", files={"image": ("f.jpg", face(shared_data, BIDEN_1))}
    )
    assert r.status_code == 201, r.text
    # a recorded video for a liveness session: the engine's video stages
    ch = c.post(
        "/v1/liveness/challenges",
        json={"actions": ["open_mouth"], "flash": False, "subject_id": "staged-subject",
              "purpose": "verify"},
    )  # fmt: skip
    video = (shared_data / VIDEO).read_bytes()
    r = c.post(
        "/v1/liveness/sessions",
        data={"token": ch.json()["token"]},
        files={"video": ("v.mp4", video, "video/mp4")},
    )
    assert r.status_code == 201, r.text
    text = server.client("").get("/metrics").text
    for stage in ("decode", "detect", "landmarks", "align", "quality", "embed"):
        count = sample(text, "facegate_engine_stage_seconds_count", kind="image", stage=stage)
        assert count is not None and count >= 1, stage
    for stage in ("decode", "detect", "mesh", "judge_and_identity", "total"):
        count = sample(text, "facegate_engine_stage_seconds_count", kind="video", stage=stage)
        assert count is not None and count >= 1, stage
    assert (sample(text, "facegate_analysis_seconds_count", phase="run") or 0) >= 2
    assert (sample(text, "facegate_analysis_seconds_count", phase="wait") or 0) >= 2
    assert sample(text, "facegate_analyses_waiting") == 0
    # this server's in-memory index: every tenant's templates of its embedding space
    after = sample(text, "facegate_index_templates", space=space)
    assert after == (before or 0) + 1 == len(server.service.ctx.store.all_templates())
    assert 'tenant_id="' not in text and "staged-subject" not in text


MULTIPROC_WORKER = """
import sys
from facegate.web import metrics
metrics.observe_stages("image", {"detect": 4.0, "embed": 12.0, "bad label!": 1.0})
with metrics.waiting_for_engine():
    pass
metrics.REQUESTS.labels("GET", "/readyz", "200").inc()
metrics.IN_FLIGHT.inc()  # this worker is answering one request when it exits
if sys.argv[1] == "clean":
    metrics.forget_this_worker()
"""

MULTIPROC_SCRAPE = """
import sys
from facegate.web import metrics

class Index:
    def sizes(self):
        return {"space-a": 3}

class Ctx:
    gallery = type("G", (), {"index": Index()})()

service = type("S", (), {"ctx": Ctx()})()
sys.stdout.write(metrics.render(service).decode())
"""


def test_multiprocess_mode_adds_up_workers(tmp_path: Path) -> None:
    """Two worker processes write their files; a third (the one that answers the scrape) shows
    their sums, and its own index. A worker that stops cleanly takes its gauges with it."""
    folder = tmp_path / "prom"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder),
           "PYTHONPATH": str(REPO / "src")}  # fmt: skip
    for how in ("clean", "killed"):
        done = subprocess.run([sys.executable, "-c", MULTIPROC_WORKER, how], env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-c", MULTIPROC_SCRAPE], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert sample(text, "facegate_requests_total", method="GET", route="/readyz", status="200") == 2
    stage = {"kind": "image", "stage": "embed"}
    assert sample(text, "facegate_engine_stage_seconds_count", **stage) == 2
    assert abs((sample(text, "facegate_engine_stage_seconds_sum", **stage) or 0) - 0.024) < 1e-9
    assert sample(text, "facegate_analysis_seconds_count", phase="wait") == 2
    assert "bad label" not in text
    # the killed worker's in-flight request still shows (nothing told the folder it is gone)
    assert sample(text, "facegate_requests_in_flight") == 1
    assert sample(text, "facegate_index_templates", space="space-a") == 3
