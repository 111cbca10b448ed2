"""GET /metrics answers Prometheus text with facegate_ metrics: requests by route template and
status, and the service's events; no subject id or key appears in it."""

from __future__ import annotations

from pathlib import Path

from tests.service.conftest import Server, consenting_subject, face

BIDEN_1 = "Joseph_Biden/face_recognition_biden.jpg"
ALEX_1 = "alex_lacamoire/face_recognition_img1.jpg"


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
