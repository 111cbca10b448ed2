"""Plain values passed between the engine's stages. Coordinates are pixels of the decoded image."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FaceBox:
    """A detected face: box (x0, y0, x1, y1), detector score, optional detector keypoints (K, 2)."""

    xyxy: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def width(self) -> float:
        return self.xyxy[2] - self.xyxy[0]

    @property
    def height(self) -> float:
        return self.xyxy[3] - self.xyxy[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.xyxy[0] + self.xyxy[2]) / 2, (self.xyxy[1] + self.xyxy[3]) / 2)


@dataclass(frozen=True)
class Landmarks:
    """Five alignment points, (5, 2): image-left eye centre, image-right eye centre, nose tip,
    image-left mouth corner, image-right mouth corner; plus the dense mesh (468, 3) when known."""

    five: np.ndarray = field(repr=False)
    mesh: np.ndarray | None = field(default=None, repr=False)
    presence: float = 1.0

    @property
    def interocular_px(self) -> float:
        return float(np.linalg.norm(self.five[1] - self.five[0]))


@dataclass(frozen=True)
class QualityCheck:
    """One measured quality value and whether it passed its bound."""

    name: str
    value: float
    passed: bool
    bound: str
    reason: str = ""

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "value": round(self.value, 4),
            "passed": self.passed,
            "bound": self.bound,
        }
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class Embedding:
    """A unit-length face embedding tagged with the space it lives in; never stored in plaintext."""

    vector: np.ndarray = field(repr=False)
    space_id: str

    def __post_init__(self) -> None:
        if self.vector.ndim != 1:
            raise ValueError("embedding vector must be 1-D")
