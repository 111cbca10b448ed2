"""One router per resource. Routes are thin: parse, call the ``FaceService`` facade, return its
answer, which the route's response model validates and documents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter


class Router(APIRouter):
    """An APIRouter whose routes answer exactly the keys the service returned: responses are
    serialised with ``exclude_unset``, so an optional model field that the service leaves out
    (``at_s`` of an action not found, a probe's ``session_id``) is not added as ``null``."""

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        kwargs["response_model_exclude_unset"] = True
        super().add_api_route(path, endpoint, **kwargs)
