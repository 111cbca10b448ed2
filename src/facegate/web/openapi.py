"""The OpenAPI document, finished after FastAPI builds it.

FastAPI documents a ``422 HTTPValidationError`` on every route with parameters, but this API
answers a malformed request with ``400 bad_request`` as problem+json (and uses 422 for faces and
evidence that are not good enough). So the generated 422s are replaced by the 400 problem, the
shared ``Problem`` schema is added to the components, and the unused validation schemas go.
Uploads are described as OpenAPI 3.1 ``contentMediaType`` strings, which client generators
(openapi-python-client) read as text: each also gets ``format: binary``, and an optional upload
is the binary schema itself (optional by not being required) rather than "binary or null".
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


# Answers any operation can give, whatever its route declares: rate limits apply to every
# request (per address before authentication), bodies are bounded everywhere, and an overloaded
# worker sheds load.
EVERYWHERE = (413, 429, 503)


def finish(spec: dict[str, Any]) -> dict[str, Any]:
    """Problem schema in the components; FastAPI's 422 validation answers replaced by our 400;
    the statuses every operation can answer (and 401 where a credential is required)."""
    bad_request = problem_responses(400)[400]
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            extra = [*EVERYWHERE, *((401,) if operation.get("security") else ())]
            if path == "/healthz":  # never limited, never shed
                extra = []
            for status, answer in problem_responses(*extra).items():
                responses.setdefault(str(status), answer)
            generated = responses.get("422", {}).get("content", {}).get("application/json", {})
            if generated.get("schema", {}).get("$ref") == _FASTAPI_VALIDATION:
                del responses["422"]
                responses.setdefault("400", bad_request)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for schema in schemas.values():
        for name, prop in schema.get("properties", {}).items():
            schema["properties"][name] = _binary_upload(prop)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    return spec


def _binary_upload(prop: dict[str, Any]) -> dict[str, Any]:
    def is_file(s: dict[str, Any]) -> bool:
        return s.get("type") == "string" and "contentMediaType" in s

    if is_file(prop):
        return {**prop, "format": "binary"}
    options = prop.get("anyOf", [])
    files = [o for o in options if is_file(o)]
    if files and all(is_file(o) or o.get("type") == "null" for o in options):
        rest = {k: v for k, v in prop.items() if k != "anyOf"}
        return {**files[0], **rest, "format": "binary"}
    return prop
