"""The OpenAPI document, finished after FastAPI builds it.

FastAPI documents a ``422 HTTPValidationError`` on every route with parameters, but this API
answers a malformed request with ``400 bad_request`` as problem+json (and uses 422 for faces and
evidence that are not good enough). So the generated 422s are replaced by the 400 problem, the
shared ``Problem`` schema is added to the components, and the unused validation schemas go.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from facegate.web.problems import problem_responses
from facegate.web.schemas import Problem

_FASTAPI_VALIDATION = "#/components/schemas/HTTPValidationError"


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with a builder that finishes the document (built once, cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
                servers=app.servers,
            )
            app.openapi_schema = finish(spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def finish(spec: dict[str, Any]) -> dict[str, Any]:
    """Problem schema in the components; FastAPI's 422 validation answers replaced by our 400."""
    bad_request = problem_responses(400)[400]
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            generated = responses.get("422", {}).get("content", {}).get("application/json", {})
            if generated.get("schema", {}).get("$ref") == _FASTAPI_VALIDATION:
                del responses["422"]
                responses.setdefault("400", bad_request)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    return spec
