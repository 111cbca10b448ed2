"""Scores and decisions (pure). A score is a cosine similarity: higher means more alike."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from facegate.errors import InputError, ModelError, SpaceMismatchError
from facegate.types import Embedding

DEFAULT_OPERATING_POINT = "fmr_1e-3"


@dataclass(frozen=True)
class OperatingPoint:
    name: str  # e.g. "fmr_1e-3"
    threshold: float
    fmr_target: float


@dataclass(frozen=True)
class Decision:
    match: bool
    score: float
    operating_point: OperatingPoint

    def to_dict(self) -> dict[str, Any]:
        return {
            "match": self.match,
            "score": round(self.score, 6),
            "threshold": round(self.operating_point.threshold, 6),
            "operating_point": self.operating_point.name,
            "fmr_target": self.operating_point.fmr_target,
        }


def similarity(a: Embedding, b: Embedding) -> float:
    if a.space_id != b.space_id:
        raise SpaceMismatchError(
            "embeddings from different spaces cannot be compared",
            spaces=[a.space_id, b.space_id],
        )
    return float(np.dot(a.vector, b.vector))


def decide(a: Embedding, b: Embedding, point: OperatingPoint) -> Decision:
    score = similarity(a, b)
    return Decision(score >= point.threshold, score, point)


def load_calibration(space_id: str) -> dict[str, Any]:
    """The calibration file shipped in the package for an embedding space."""
    try:
        text = resources.files("facegate.calibration").joinpath(f"{space_id}.json").read_text()
    except FileNotFoundError as exc:
        raise ModelError(
            f"no calibration for embedding space {space_id}", code="no_calibration"
        ) from exc
    record: dict[str, Any] = json.loads(text)
    return record


def operating_point(space_id: str, name: str = DEFAULT_OPERATING_POINT) -> OperatingPoint:
    points = load_calibration(space_id)["operating_points"]
    if name not in points:
        raise InputError(
            f"unknown operating point {name!r}; known: {sorted(points)}",
            code="unknown_operating_point",
        )
    p = points[name]
    return OperatingPoint(name, float(p["threshold"]), float(p["fmr_target"]))
