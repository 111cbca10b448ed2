"""Optional OpenTelemetry tracing (FACEGATE_OTEL=1): a server span per request named by its
route template, an analysis span with the engine's stage times under it, a caller's traceparent
continued, and no attribute or name that carries a subject id, key, token, path or image."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import missing_resource
from tests.service.conftest import Server, consenting_subject, face, start_server, stop_server

from facegate.web import tracing

BIDEN_1 = "Joseph_Biden/face_recognition_biden.jpg"
BIDEN_2 = "Joseph_Biden/face_recognition_biden2.jpg"
SUBJECT = "traced-subject-7f3a"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
# what a span may carry: the rest (paths, addresses, user agents, queries) is not ours to send
ALLOWED = {
    "http.request.method",
    "http.route",
    "http.response.status_code",
    "facegate.request_id",
    "error.type",
    "facegate.analysis.kind",
}


@pytest.fixture(scope="module")
def traced(engine, tmp_path_factory) -> Iterator[tuple[Server, Any]]:
    try:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        missing_resource("the OpenTelemetry SDK is missing: pip install -e '.[otel]'")
    exporter = InMemorySpanExporter()
    tracing.reset()
    tracing.configure(exporter)
    server = start_server(engine, tmp_path_factory.mktemp("traced"), otel=True)
    yield server, exporter
    stop_server(server)
    tracing.reset()


def test_spans_name_routes_and_carry_nothing_private(
    traced: tuple[Server, Any], shared_data: Path
) -> None:
    server, exporter = traced
    c = server.client()
    consenting_subject(c, SUBJECT)
    exporter.clear()
    parent = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
    r = c.post(
        f"/v1/subjects/{SUBJECT}/enroll",
        files={"image": ("f.jpg", face(shared_data, BIDEN_1))},
        headers=parent,
    )
    assert r.status_code == 201, r.text
    enrol_request_id = r.headers["x-request-id"]
    r = c.post(
        f"/v1/subjects/{SUBJECT}/verify?note={SUBJECT}",
        files={"image": ("f.jpg", face(shared_data, BIDEN_2))},
    )
    assert r.status_code == 200 and r.json()["match"] is True
    assert c.get(f"/v1/subjects/{SUBJECT}-missing").status_code == 404
    assert server.client("fg_bad_key").get("/v1/tenant").status_code == 401

    deadline = time.time() + 5  # a request's span ends just after its answer is sent
    while "GET /v1/tenant" not in (names := [s.name for s in exporter.get_finished_spans()]):
        assert time.time() < deadline, names
        time.sleep(0.05)
    spans = exporter.get_finished_spans()
    assert "POST /v1/subjects/{subject_id}/enroll" in names
    assert "POST /v1/subjects/{subject_id}/verify" in names
    assert "GET /v1/subjects/{subject_id}" in names
    assert "GET /v1/tenant" in names
    enrol = next(s for s in spans if s.name == "POST /v1/subjects/{subject_id}/enroll")
    assert format(enrol.context.trace_id, "032x") == TRACE_ID  # the caller's trace, continued
    assert enrol.attributes["http.response.status_code"] == 201
    assert enrol.attributes["facegate.request_id"] == enrol_request_id
    analyses = [s for s in spans if s.name == "facegate.analysis"]
    assert len(analyses) == 2
    assert analyses[0].parent is not None and analyses[0].parent.span_id == enrol.context.span_id
    assert analyses[0].attributes["facegate.analysis.kind"] == "image"
    assert analyses[0].attributes["facegate.stage.embed_ms"] > 0

    forbidden = [SUBJECT, server.admin_key, "fg_bad_key", "/v1/subjects/traced", "127.0.0.1"]
    for s in spans:
        for key, value in (s.attributes or {}).items():
            assert key in ALLOWED or (key.startswith("facegate.stage.") and key.endswith("_ms")), (
                s.name,
                key,
            )
            assert not any(f in str(value) for f in forbidden), (s.name, key, value)
        assert not any(f in s.name for f in forbidden), s.name
        assert not s.events, (s.name, s.events)  # no recorded exceptions
        assert not any(f in str(v) for v in s.resource.attributes.values() for f in forbidden)


def test_off_by_default_costs_nothing(engine, tmp_path_factory) -> None:
    """Without FACEGATE_OTEL the app has no tracing middleware at all."""
    from facegate.settings import Settings
    from facegate.web.app import create_app

    tmp = tmp_path_factory.mktemp("untraced")
    app = create_app(Settings(tmp / "d", tmp / "k"), service=object())  # type: ignore[arg-type]
    assert not any(m.cls is tracing.Tracing for m in app.user_middleware)
