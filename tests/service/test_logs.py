"""Structured logs: one JSON line per request with its id, route template, status and duration;
the id comes back in X-Request-ID; no key, token, subject id or image bytes in any line."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from tests.service.conftest import Server, consenting_subject, face

from facegate.web.logs import JsonFormatter

BIDEN_1 = "Joseph_Biden/face_recognition_biden.jpg"


def test_request_lines_are_json_and_name_no_one(server: Server, shared_data: Path) -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("facegate")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        c = server.client()
        consenting_subject(c, "private-person-7")
        photo = face(shared_data, BIDEN_1)
        r = c.post(
            "/v1/subjects/private-person-7/enroll",
            files={"image": ("f.jpg", photo)},
            headers={"X-Request-ID": "trace-42"},
        )
        assert r.status_code == 201 and r.headers["x-request-id"] == "trace-42"
        assert server.client("fg_x_wrong").get("/v1/tenant").status_code == 401
        assert c.get("/v1/subjects/private-person-7/export").status_code == 200
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    requests = [x for x in lines if x["message"] == "request"]
    enrol = next(x for x in requests if x["request_id"] == "trace-42")
    assert enrol["route"] == "/v1/subjects/{subject_id}/enroll" and enrol["status"] == 201
    assert enrol["duration_ms"] > 0 and enrol["tenant_id"].startswith("t_")
    assert any(x["status"] == 401 for x in requests)
    assert all(x["request_id"] for x in requests)
    text = buffer.getvalue()
    assert "private-person-7" not in text and server.admin_key not in text
    assert "fg_x_wrong" not in text and photo[200:240].hex() not in text
