"""The OpenAPI document describes every response body, every problem and the security schemes;
and every route's real answer is exactly what its response model declares: it validates, and
it carries the same keys and values the service returned (a model never drops or invents one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from starlette.requests import Request
from tests.service.conftest import Server, face

from facegate.errors import (
    ConfigError,
    FacegateError,
    ModelError,
    NotFoundError,
    TooLargeError,
    UnavailableError,
)
from facegate.service import FaceService
from facegate.settings import Settings
from facegate.web.app import create_app
from facegate.web.problems import PROBLEM_MEDIA_TYPE, facegate_error_handler
from facegate.web.routers import capture, faces, health, liveness, subjects, tenant, webhooks
from facegate.web.schemas import Problem

BIDEN_1 = "Joseph_Biden/face_recognition_biden.jpg"
BIDEN_2 = "Joseph_Biden/face_recognition_biden2.jpg"
VIDEO = "videos/liveportrait_d18.mp4"
PUBLIC = {"/healthz", "/readyz"}


def offline_app(tmp_path: Path) -> FastAPI:
    """The app, for its OpenAPI document only (no service is ever called)."""
    settings = Settings(data_dir=tmp_path / "data", key_file=tmp_path / "keys")
    return create_app(settings, service=cast(FaceService, object()))


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return offline_app(tmp_path_factory.mktemp("openapi")).openapi()


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def success_schema(spec: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    (status,) = [s for s in operation["responses"] if s.startswith("2")]
    return resolve(spec, operation["responses"][status]["content"]["application/json"]["schema"])


def test_every_operation_documents_a_named_response_body(spec: dict[str, Any]) -> None:
    for path, method, operation in operations(spec):
        body = success_schema(spec, operation)
        assert body.get("properties"), f"{method} {path} has no named response properties"
        assert operation.get("description"), f"{method} {path} has no description"
    enrolled = success_schema(spec, spec["paths"]["/v1/subjects/{subject_id}/enroll"]["post"])
    assert {"template_id", "quality", "duplicates", "duplicate_threshold"} <= set(
        enrolled["properties"]
    )
    verified = success_schema(spec, spec["paths"]["/v1/subjects/{subject_id}/verify"]["post"])
    assert {"match", "score", "threshold", "operating_point", "fmr_target", "liveness"} <= set(
        verified["required"]
    )
    schemas = spec["components"]["schemas"]
    assert not [name for name in schemas if "sealed" in str(schemas[name]).lower()]
    assert not [name for name in schemas if "vector" in str(schemas[name]).lower()]


def test_problems_are_documented_as_problem_json(spec: dict[str, Any]) -> None:
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # we answer 400, not 422
    for path, method, operation in operations(spec):
        problems = {s: r for s, r in operation["responses"].items() if s[0] in "45"}
        if path not in PUBLIC:
            assert "401" in problems, f"{method} {path}"
        for status, response in problems.items():
            assert list(response["content"]) == [PROBLEM_MEDIA_TYPE], f"{method} {path} {status}"
            schema = response["content"][PROBLEM_MEDIA_TYPE]["schema"]
            assert schema == {"$ref": "#/components/schemas/Problem"}
        if operation.get("requestBody") or operation.get("parameters"):
            assert "400" in problems, f"{method} {path} answers bad_request"


def test_security_schemes_cover_the_authenticated_routes(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["BearerKey"]["scheme"] == "bearer"
    assert schemes["ApiKeyHeader"]["name"] == "X-API-Key"
    assert schemes["CaptureToken"]["name"] == "X-Capture-Token"
    for path, method, operation in operations(spec):
        names = {name for requirement in operation.get("security", []) for name in requirement}
        if path in PUBLIC:
            assert not names, f"{method} {path}"
        elif path.startswith("/v1/capture/"):
            assert names == {"CaptureToken"}, f"{method} {path}"
        else:
            assert names == {"BearerKey", "ApiKeyHeader"}, f"{method} {path}"


def test_uploads_are_binary(spec: dict[str, Any]) -> None:
    for path, field in [
        ("/v1/subjects/{subject_id}/enroll", "image"),
        ("/v1/subjects/{subject_id}/enroll/id-document", "document"),
        ("/v1/liveness/sessions", "video"),
        ("/v1/capture/submit", "video"),
    ]:
        body = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        prop = resolve(spec, body["schema"])["properties"][field]
        variants = prop.get("anyOf", [prop])
        assert any(
            v.get("format") == "binary" or v.get("contentMediaType") == "application/octet-stream"
            for v in variants
        ), f"{path} {field}: {prop}"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (NotFoundError("no such subject"), 404, "not_found"),
        (TooLargeError("over", code="body_too_large"), 413, "body_too_large"),
        (UnavailableError("liveness is off", code="liveness_disabled"), 503, "liveness_disabled"),
        (ModelError("weights missing"), 503, "model_unavailable"),
        (ConfigError("bad key file", path="/secret"), 500, "internal_error"),
        (FacegateError("anything else"), 500, "internal_error"),
    ],
)
def test_problem_status_comes_from_the_error_class(
    error: FacegateError, status: int, code: str
) -> None:
    request = Request({"type": "http", "method": "GET", "path": "/x", "headers": []})
    response = asyncio.run(facegate_error_handler(request, error))
    body = Problem.model_validate_json(bytes(response.body))
    assert (response.status_code, body.code, body.status) == (status, code, status)
    assert response.media_type == PROBLEM_MEDIA_TYPE
    if status >= 500:
        assert "secret" not in bytes(response.body).decode()


class Recorder:
    """The service, with the last answer of each facade call kept for comparison."""

    def __init__(self, service: FaceService) -> None:
        self._service = service
        self.answers: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._service, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            answer = attr(*args, **kwargs)
            self.answers.append((name, answer))
            return answer

        return call


def test_every_route_answers_exactly_its_declared_model(server: Server, shared_data: Path) -> None:
    recorder = Recorder(server.service)
    settings = Settings(
        data_dir=server.data_dir,
        key_file=server.key_file,
        rate_per_minute=10_000,
        # a receiver that refuses at once (loopback's discard port), tried once: the delivery
        # fails within a poll, so that it can be redelivered
        webhook_allow_private=True,
        webhook_max_attempts=1,
        webhook_poll_s=0.2,
    )
    app = create_app(settings, service=cast(FaceService, recorder))
    routes = {  # the routers' own routes: the app holds them behind include wrappers
        (method, r.path): r
        for module in (health, tenant, subjects, faces, liveness, capture, webhooks)
        for r in module.router.routes
        if isinstance(r, APIRoute) and r.include_in_schema  # the page and its script are not JSON
        for method in r.methods or ()
    }
    checked: set[tuple[str, str]] = set()
    admin = {"Authorization": f"Bearer {server.admin_key}"}

    def call(method: str, template: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        recorder.answers.clear()
        url = template.format(**kw.pop("path", {}))
        r = client.request(method, url, headers=headers if headers is not None else admin, **kw)
        assert 200 <= r.status_code < 300, f"{method} {template}: {r.status_code} {r.text}"
        route = routes[(method, template)]
        TypeAdapter(route.response_model).validate_python(r.json())
        if recorder.answers:  # the route's answer is its last facade call's, key for key
            assert r.json() == jsonable_encoder(recorder.answers[-1][1]), f"{method} {template}"
        checked.add((method, template))
        return r.json()

    def photo(rel: str) -> dict[str, Any]:
        return {"image": ("face.jpg", face(shared_data, rel), "image/jpeg")}

    video = {"video": ("v.mp4", (shared_data / VIDEO).read_bytes(), "video/mp4")}
    with TestClient(app) as client:
        call("GET", "/healthz")
        call("GET", "/readyz")
        version = call("GET", "/v1/tenant")["consent_text_version"]
        call("PATCH", "/v1/tenant", json={"retention_days": 1000})
        key_id = call("POST", "/v1/keys", json={"roles": ["verify"], "label": "kiosk"})["key_id"]
        call("DELETE", "/v1/keys/{key_id}", path={"key_id": key_id})
        consent = {"text_version": version, "method": "checkbox"}
        for sid in ("oa-a", "oa-b", "oa-c", "oa-d"):
            call("POST", "/v1/subjects", json={"subject_id": sid})
            call(
                "POST", "/v1/subjects/{subject_id}/consents", path={"subject_id": sid}, json=consent
            )
        call("GET", "/v1/subjects/{subject_id}", path={"subject_id": "oa-a"})
        call(
            "POST",
            "/v1/subjects/{subject_id}/enroll",
            path={"subject_id": "oa-a"},
            files=photo(BIDEN_1),
        )
        dup = call(
            "POST",
            "/v1/subjects/{subject_id}/enroll",
            path={"subject_id": "oa-b"},
            files=photo(BIDEN_2),
        )
        assert dup["duplicates"] and "session_id" not in dup["liveness"]
        call(
            "POST",
            "/v1/subjects/{subject_id}/enroll/id-document",
            path={"subject_id": "oa-c"},
            files={**photo(BIDEN_2), "document": ("id.jpg", face(shared_data, BIDEN_1))},
        )
        call(
            "POST",
            "/v1/subjects/{subject_id}/verify",
            path={"subject_id": "oa-a"},
            files=photo(BIDEN_2),
        )
        call("POST", "/v1/search", data={"subject_id": "oa-a"}, files=photo(BIDEN_2))
        assert call("GET", "/v1/duplicates")["clusters"]
        call("GET", "/v1/subjects/{subject_id}/export", path={"subject_id": "oa-a"})
        challenge = call(
            "POST",
            "/v1/liveness/challenges",
            json={
                "actions": ["blink", "open_mouth"],
                "flash": False,
                "subject_id": "oa-d",
                "purpose": "enroll",
            },
        )
        verdict = call(
            "POST", "/v1/liveness/sessions", data={"token": challenge["token"]}, files=video
        )
        assert verdict["live"], verdict["reasons"]
        live = call(
            "POST",
            "/v1/subjects/{subject_id}/enroll",
            path={"subject_id": "oa-d"},
            data={"liveness_session": verdict["session_id"]},
        )
        assert live["liveness"]["session_id"] and live["quality"] is None
        hook = call("PUT", "/v1/tenant/webhook", json={"url": "http://127.0.0.1:9/hook"})
        assert hook["secret"]
        link = call("POST", "/v1/capture-links", json={"subject_id": "oa-d", "flow": "verify"})
        capture_headers = {"X-Capture-Token": link["capture_token"]}
        call("GET", "/v1/capture/info", headers=capture_headers)
        call("POST", "/v1/capture/consent", headers=capture_headers)
        challenge = call("POST", "/v1/capture/challenge", headers=capture_headers)
        call(
            "POST",
            "/v1/capture/submit",
            headers=capture_headers,
            data={"token": challenge["token"]},
            files=video,
        )
        call("POST", "/v1/capture/decline", headers=capture_headers)
        assert call("GET", "/v1/tenant/quarantine")["templates"] == []
        status = call("GET", "/v1/capture-links/{link_id}", path={"link_id": link["id"]})
        assert status["status"] == "declined" and status["result"] is not None  # its last step
        call("DELETE", "/v1/capture-links/{link_id}", path={"link_id": link["id"]})
        deadline = time.monotonic() + 30
        failed_only = {"status": "failed"}
        while not (
            failed := call("GET", "/v1/tenant/webhook-deliveries", params=failed_only)["deliveries"]
        ):
            assert time.monotonic() < deadline, "the declined capture's event was never tried"
            time.sleep(0.2)
        event = {"event_id": failed[0]["event_id"]}
        call("POST", "/v1/tenant/webhook-deliveries/{event_id}/redeliver", path=event)
        assert call("GET", "/v1/tenant/webhook")["url"] == "http://127.0.0.1:9/hook"
        call("POST", "/v1/tenant/webhook/rotate-secret")
        call("DELETE", "/v1/tenant/webhook")
        call("DELETE", "/v1/subjects/{subject_id}/consents", path={"subject_id": "oa-b"})
        call("DELETE", "/v1/subjects/{subject_id}", path={"subject_id": "oa-b"})
    assert set(routes) - checked == set(), "routes without a real call in this test"
